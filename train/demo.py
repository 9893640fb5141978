"""``make demo``: train an Aaren agent on the shipped Hopper dataset and act in Hopper-v5.

Sized for a laptop CPU (4 minutes on 2 cores, measured from a fresh clone): the DT model at
its default size, the episode-aligned recipe (Aaren's default), a short budget of gradient
steps, then 10 evaluation episodes in the real MuJoCo environment with recurrent (O(1))
acting. Prints the normalised score and the agent's time per action.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["DemoConfig", "main"]


@dataclass
class DemoConfig:
    """Train and evaluate an Aaren Decision agent on the shipped Hopper-v5 demo dataset."""

    steps: int = 600
    """Gradient steps."""
    run_dir: Path = Path("runs/demo")
    """Where the run goes; an existing run there is moved aside with a timestamp suffix."""
    seed: int = 0
    """Seed for the model, sampler and evaluation episodes."""
    backbone: Literal["aaren", "transformer"] = "aaren"
    """Sequence backbone."""
    eval_episodes: int = 10
    """Evaluation episodes in Hopper-v5."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Training precision. auto: bf16 where the CPU computes it natively (AVX512-BF16 or
    AMX), fp32 elsewhere; fp32 is the path an AVX2-only CPU takes."""


def main(argv: list[str] | None = None) -> int:
    from aaren_rl.cli import run_cli

    return run_cli("aaren-demo", lambda: _demo(argv))


def _demo(argv: list[str] | None) -> int:
    import tyro

    from aaren_rl.train.cli import print_eval, print_horizon
    from aaren_rl.train.config import TrainConfig
    from aaren_rl.train.loop import train

    demo = tyro.cli(DemoConfig, args=argv)
    cfg = TrainConfig(
        dataset="demo:hopper",
        backbone=demo.backbone,
        steps=demo.steps,
        seed=demo.seed,
        run_dir=demo.run_dir,
        eval_episodes=demo.eval_episodes,
        # all 10 episodes in one batch: Aaren's step costs about the same for 2 or 10
        # environments, so the horizon choice and evaluation take 12 s instead of 26 s
        # (docs/training.md, "The demo")
        eval_num_envs=10,
        precision=demo.precision,
        checkpoint_every=200,
        threads=None,  # the cores other processes leave free (aaren_rl/cpu.py)
        # The demo plays in the env anyway, so it picks the memory horizon there, labelled
        # online, and trains on every episode. With the offline default (5 of the 62 demo
        # episodes held out) one 600-step run scored 37.6 against 80.8 without the hold-out
        # (docs/training.md, "The demo"); aaren-train's default stays offline.
        horizon_selection="online",
    )
    cfg.validate()  # a bad flag is refused before the previous demo run is moved
    run_dir = demo.run_dir
    if run_dir.exists():
        moved = run_dir.with_name(f"{run_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        run_dir.rename(moved)
        print(f"(previous demo run kept at {moved})")
    print(
        f"aaren-rl demo: {cfg.backbone} backbone, recipe {cfg.resolved_recipe} "
        f"(windows of up to {cfg.window_length} steps, batch {cfg.resolved_batch_size}), "
        f"{cfg.steps} steps on {cfg.dataset}"
    )
    t0 = time.perf_counter()
    result = train(cfg)  # dataset, env or run-directory problems: one line, exit 2 (run_cli)
    print(
        f"\ntrained in {time.perf_counter() - t0:.0f} s ({result.seconds_per_step * 1e3:.0f} ms per "
        f"step, {result.precision}); checkpoint: {result.run_dir / 'checkpoint'}"
    )
    print_horizon(result.memory_horizon)
    if result.eval:
        print_eval(result.eval)
    print(f"evaluate again: aaren-eval --checkpoint {result.run_dir / 'checkpoint'} --episodes 10")
    return 0


if __name__ == "__main__":
    sys.exit(main())
