"""``aaren-train``: train an offline Decision agent from the command line.

Examples:
    aaren-train                                   # the shipped Hopper demo dataset, Aaren
    aaren-train --dataset d4rl:hopper-medium.hdf5 --backbone transformer --steps 20000
    aaren-train --run-dir runs/exp1 --resume      # continue an interrupted run
    torchrun --nproc-per-node 2 -m aaren_rl.train.cli --steps 1000   # DDP (gloo on CPU)
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    import tyro

    from aaren_rl.train.config import TrainConfig

    try:
        cfg = tyro.cli(TrainConfig, args=argv, description=TrainConfig.__doc__)
    except ValueError as e:  # raised by TrainConfig validation
        print(f"aaren-train: error: {e}", file=sys.stderr)
        return 2
    from aaren_rl.agents.checkpoint import CheckpointError
    from aaren_rl.envs import DatasetError, EnvError
    from aaren_rl.train.loop import TrainError, train

    args = sys.argv[1:] if argv is None else argv
    explicit = {
        a[2:].split("=", 1)[0].replace("-", "_").removeprefix("no_")
        for a in map(str, args)
        if a.startswith("--")
    }
    try:
        result = train(cfg, explicit)
    except (TrainError, DatasetError, EnvError, CheckpointError, ValueError) as e:
        print(f"aaren-train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\naaren-train: interrupted; continue with --resume --run-dir <run dir> "
            "(from the last checkpoint)",
            file=sys.stderr,
        )
        return 130
    if result.metrics is not None and result.run_dir is not None:
        print(f"run: {result.run_dir}")
        print(
            f"steps: {result.steps}, final loss {result.final_loss:.4f}, "
            f"{result.seconds_per_step * 1000:.0f} ms per training step (median)"
        )
        if result.eval:
            _print_eval(result.eval)
    return 0


def _print_eval(ev: dict) -> None:
    norm = ev.get("normalized_mean")
    line = f"eval ({ev.get('mode')}, {len(ev.get('returns', []))} episodes): return {ev['return_mean']:.1f} ± {ev['return_std']:.1f}"
    if norm is not None:
        line += f", normalized score {norm:.1f} ± {ev.get('normalized_std', 0.0):.1f}"
    print(line)
    per_call = ev.get("act_us_per_call")
    if per_call is not None:
        n = ev.get("num_envs", 1)
        print(f"agent time per action: {per_call:.0f} µs per predict call ({n} envs batched)")


if __name__ == "__main__":
    sys.exit(main())
