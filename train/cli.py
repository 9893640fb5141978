"""``aaren-train``: train an offline Decision agent from the command line.

Examples:
    aaren-train                                   # the shipped Hopper demo dataset, Aaren
    aaren-train --dataset d4rl:hopper-medium.hdf5 --backbone transformer --steps 20000
    aaren-train --model.dim 256 --model.num-layers 4 --model.num-heads 4   # a larger model
    aaren-train --run-dir runs/exp1 --resume      # continue an interrupted run
    torchrun --nproc-per-node 2 -m aaren_rl.train.cli --steps 1000   # DDP (gloo on CPU)

Exit codes (``aaren_rl.cli.run_cli``): 0 done, 2 bad input (one line naming the flag or
file), 1 a failure during the work (e.g. disk full while saving: the previous checkpoint is
intact), 130 interrupted (the message names the run directory to ``--resume``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence

from aaren_rl.train.config import FLAGS_ONLY, TrainConfig

__all__ = ["main", "parse_config"]


def parse_config(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse and check the flags; with ``--resume``, the run's config fills the rest.

    Which flags were given is never guessed from argv by hand: on ``--resume`` the same argv
    is parsed a second time with the run's saved config.json as tyro's defaults, so a flag
    left out takes the run's value and a flag given keeps the given one (even when it equals
    the built-in default). ``train()`` then refuses any given value that differs from the
    run's (except ``--steps`` and the W&B/progress flags). What reaches the network or
    W&B (``FLAGS_ONLY``: --track, --wandb-*, --download) is never taken from config.json, a
    file someone may have sent: it is the flags' value (or the built-in default). The values
    reused from the file and those the flags changed are printed (stderr).
    """
    import tyro

    from aaren_rl.train.run_dir import saved_train_config

    args = None if argv is None else [str(a) for a in argv]
    cfg = tyro.cli(TrainConfig, args=args, description=TrainConfig.__doc__)
    cfg.validate()  # before any file is read or written
    if cfg.resume:
        assert cfg.run_dir is not None  # validate() requires it
        given = cfg  # the flags over the built-in defaults
        saved = saved_train_config(cfg.run_dir)  # reads only; train() checks the checkpoint
        cfg = tyro.cli(TrainConfig, args=args, default=saved, description=TrainConfig.__doc__)
        # what reaches the network or W&B comes from flags only, never from the file
        cfg = dataclasses.replace(cfg, **{k: getattr(given, k) for k in FLAGS_ONLY})
        cfg.validate()
        if os.environ.get("RANK", "0") == "0":
            print(describe_resume(given, saved, cfg), file=sys.stderr)
    return cfg


def describe_resume(given: TrainConfig, saved: TrainConfig, cfg: TrainConfig) -> str:
    """Which values ``--resume`` took from the run's config.json and which from flags."""
    from aaren_rl.train.config import flatten_config

    base, file, now = (flatten_config(c.to_dict()) for c in (TrainConfig(), saved, cfg))
    flags = flatten_config(given.to_dict())
    skip = {"run_dir", "resume", *FLAGS_ONLY}
    reused = [f"{k}={v!r}" for k, v in file.items() if k not in skip and v != base.get(k)
              and now.get(k) == v and flags.get(k) != v]  # fmt: skip
    changed = [f"{k}={now[k]!r}" for k in now if k not in skip and now[k] != file.get(k)]
    ignored = [f"{k}={file[k]!r}" for k in FLAGS_ONLY if file.get(k) != now.get(k)]
    path = cfg.run_dir / "config.json" if cfg.run_dir else "config.json"
    lines = [f"aaren-train --resume: from {path}: {', '.join(reused) or 'built-in defaults'}"]
    lines.append(f"  from flags: {', '.join(changed) or 'none'}")
    if ignored:
        lines.append(
            f"  not taken from the file (W&B and downloads follow flags only): {', '.join(ignored)}"
        )
    return "\n".join(lines)


def _train(argv: Sequence[str] | None) -> int:
    from aaren_rl.train.loop import train

    cfg = parse_config(argv)
    result = train(cfg)
    print(f"run: {result.run_dir}")
    print(
        f"steps: {result.steps}, final loss {result.final_loss:.4f}, "
        f"{result.seconds_per_step * 1000:.0f} ms per training step (median)"
    )
    print_horizon(result.memory_horizon)
    if cfg.train_memory_horizon and cfg.memory_horizon is None:
        print(
            f"memory horizon for recurrent acting: {cfg.train_memory_horizon}, the one it "
            "trained with (--train-memory-horizon; nothing chosen after training)"
        )
    if result.eval:
        print_eval(result.eval)
    return 0


def print_horizon(choice: dict | None) -> None:
    """The memory horizon chosen at the end of training, how (offline: on held-out episodes;
    online: in the environment) and every candidate's score."""
    if not choice:
        return
    name = lambda k: "whole episode" if k == "0" else k  # noqa: E731
    chosen = choice["memory_horizon"] or "whole episode"
    if choice.get("selection") == "offline":
        tried = ", ".join(f"{name(k)}: {v:.4f}" for k, v in choice["action_errors"].items())
        print(
            f"memory horizon for recurrent acting (chosen offline): {chosen} (action error, "
            f"{choice['criterion']}, on {len(choice['scored_episodes'])} of "
            f"{len(choice['heldout_episodes'])} held-out episodes: {tried})"
        )
        return
    tried = ", ".join(f"{name(k)}: {v:.1f}" for k, v in choice["validation_scores"].items())
    print(
        f"memory horizon for recurrent acting (chosen online, in the environment): {chosen} "
        f"(validation scores over {choice['validation_episodes']} episodes: {tried})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    from aaren_rl.cli import run_cli

    return run_cli("aaren-train", lambda: _train(argv))


def print_eval(ev: dict) -> None:
    """The evaluation summary: return (and normalised score), agent time per action."""
    norm = ev.get("normalized_mean")
    line = (
        f"eval ({ev.get('mode')}, {len(ev.get('returns', []))} episodes): "
        f"return {ev['return_mean']:.1f} ± {ev['return_std']:.1f}"
    )
    if norm is not None:
        line += f", normalized score {norm:.1f} ± {ev.get('normalized_std', 0.0):.1f}"
    print(line)
    per_call = ev.get("act_us_per_call")
    if per_call is not None:
        n = ev.get("num_envs", 1)
        print(f"agent time per action: {per_call:.0f} µs per predict call ({n} envs batched)")


if __name__ == "__main__":
    sys.exit(main())
