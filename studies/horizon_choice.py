"""What `aaren-finetune --memory-horizon choose` would pick for a checkpoint, without fine-tuning.

The choice plays each candidate horizon on validation episodes in the environment before the
first collection (an online choice; docs/online.md, "Train as you act", on `--memory-horizon
choose`). This runs
only that step, through the fine-tuner itself (`Finetuner.choose_memory_horizon`), for several
seeds, and writes what each seed picked with every candidate's score, so the choice can be
quoted for checkpoints that were not fine-tuned with it (docs/research/online.md, "One recipe
on the three datasets: the 100-best buffer with cosine decay").

A one-off study tool, not part of the installed package (run it from the repository root):

    python -m studies.horizon_choice --checkpoint RUN/checkpoint --seeds 0 1 2 --out choice.json

The fine-tuner's run folder is a temporary one, removed at the end; nothing is written next to
the checkpoint. `--out` follows every command's output rule (`aaren_rl.fileio.check_output_file`):
an existing file, a symlink or the checkpoint itself is never replaced.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tyro

from aaren_rl.cpu import cpu_record
from aaren_rl.eval.horizon import HORIZON_CANDIDATES
from aaren_rl.fileio import atomic_write_json, check_output_file
from aaren_rl.train.finetune import Finetuner
from aaren_rl.train.finetune_config import FinetuneConfig


@dataclass
class Config:
    checkpoint: Path
    """The Aaren checkpoint (RUN/checkpoint) to choose a horizon for."""
    out: Path
    """JSON written here: per seed, the pick and every candidate's score. Must not exist."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Fine-tuning seeds: each plays its own validation episodes (aaren-finetune --seed)."""
    candidates: tuple[int, ...] = HORIZON_CANDIDATES
    """The horizons tried (aaren-finetune --horizon-candidates; 0: the whole episode)."""
    episodes: int = 10
    """Validation episodes per candidate (aaren-finetune --horizon-episodes)."""
    num_envs: int = 2
    """Environments stepped in lockstep (aaren-finetune --eval-num-envs)."""
    max_episode_steps: int | None = None
    """Cap on episode length (aaren-finetune --max-episode-steps); default: the env's."""


def choices(cfg: Config) -> dict[str, dict[str, Any]]:
    """Seed (as a string) -> the choice `aaren-finetune --memory-horizon choose` records."""
    out: dict[str, dict[str, Any]] = {}
    for seed in cfg.seeds:
        with tempfile.TemporaryDirectory(prefix="horizon-choice-") as tmp:
            ft = Finetuner.build(
                FinetuneConfig(
                    checkpoint=cfg.checkpoint,
                    run_dir=Path(tmp) / "run",
                    seed=seed,
                    memory_horizon="choose",
                    horizon_candidates=cfg.candidates,
                    horizon_episodes=cfg.episodes,
                    eval_num_envs=cfg.num_envs,
                    max_episode_steps=cfg.max_episode_steps,
                    seed_trajectories=0,
                    threads=1,
                    progress=False,
                )
            )
            try:
                out[str(seed)] = ft.choose_memory_horizon()
            finally:
                ft.lock.release()
    return out


def main() -> None:
    cfg = tyro.cli(Config)
    check_output_file(cfg.out, "--out", inputs=[cfg.checkpoint])  # before any work
    result = {
        "checkpoint": str(cfg.checkpoint),
        "choices": choices(cfg),
        "machine": {"cpu": cpu_record()},  # model, cores and instruction-set flags
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for seed, c in result["choices"].items():
        scores = ", ".join(f"H {h}: {v:.1f}" for h, v in c["validation_scores"].items())
        print(
            f"seed {seed}: H = {c['memory_horizon']} ({scores}; checkpoint's H = "
            f"{c['checkpoint_memory_horizon']})"
        )
    atomic_write_json(cfg.out, result)
    print(f"wrote {cfg.out}")


if __name__ == "__main__":
    main()
