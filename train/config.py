"""The training configuration: one typed dataclass, parsed by tyro into ``aaren-train --help``.

Every field's docstring is its help text. Derived values (the recipe a backbone uses by
default, the warm-up length, the run directory) are properties, never attributes set after
parsing (STYLE.md §4).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aaren_rl.aaren_policy import BackboneConfig

__all__ = ["TrainConfig", "config_differences"]

# Fields that may change between an interrupted run and its --resume (a larger --steps
# extends a finished run; the warm-up then must be given explicitly to stay the same).
RESUMABLE_FIELDS = (
    "resume",
    "steps",
    "track",
    "wandb_project",
    "wandb_entity",
    "wandb_group",
    "progress",
)


@dataclass
class TrainConfig:
    """Train a Decision-Transformer-style agent with an Aaren or Transformer backbone."""

    dataset: str = "demo:hopper"
    """Dataset spec: d4rl:PATH (D4RL HDF5 file), minari:ID (local Minari dataset), or
    demo:hopper (the small Hopper-v5 dataset shipped with aaren-rl)."""
    download: bool = False
    """For minari:ID datasets not found locally: download them (needs network; off by default
    so that an offline machine fails fast with the list of local datasets)."""
    env: str | None = None
    """Environment for evaluation (short name like hopper, or a Gymnasium id). Default: the
    environment recorded in the dataset."""
    backbone: Literal["aaren", "transformer"] = "aaren"
    """Sequence backbone. Nothing else in the model differs between the two."""

    # ---- model size (DT defaults) ----
    dim: int = 128
    """Embedding width."""
    num_layers: int = 3
    """Residual blocks."""
    num_heads: int = 1
    """Attention heads per block."""
    dropout: float = 0.1
    """Dropout on embeddings and residual branches."""
    max_timestep: int = 1000
    """Rows of the timestep embedding (episode length; later steps reuse the last row)."""

    # ---- training recipe ----
    recipe: Literal["auto", "window", "episode"] = "auto"
    """Training windows. window: random K-step windows (DT). episode: windows that start at
    t = 0 and cover up to --episode-length steps (matches recurrent acting). auto: episode for
    aaren, window for transformer (the recipe each acts best with; see docs/results.md)."""
    context_length: int = 20
    """K: window length in timesteps for the window recipe and for window-mode acting."""
    episode_length: int = 1000
    """Longest training window of the episode recipe, in timesteps."""
    batch_size: int | None = None
    """Trajectory windows per batch (per process). Default: 64 for window, 4 for episode."""
    steps: int = 5000
    """Gradient steps in total (DT's reference uses 100k; see docs for what fits a CPU)."""
    learning_rate: float = 1e-4
    """AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    warmup_steps: int | None = None
    """Linear learning-rate warm-up. Default: min(10000, steps // 10)."""
    grad_clip: float = 0.25
    """Gradient norm clip."""
    return_scale: float = 1000.0
    """Returns-to-go are divided by this (DT uses 1000 for MuJoCo)."""
    seed: int = 0
    """Seeds the model, dropout and the batch sampler."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: auto picks cuda when available."""
    threads: int | None = None
    """torch CPU threads per process (default: torch's choice)."""

    # ---- evaluation, checkpoints, logging ----
    target_return: float | None = None
    """Return-to-go to condition on when evaluating. Default: the env's reference target."""
    eval_every: int = 0
    """Evaluate in the environment every N steps (0: only at the end)."""
    eval_episodes: int = 10
    """Episodes per evaluation (0: no evaluation)."""
    eval_num_envs: int = 2
    """Parallel environments per evaluation."""
    eval_max_episode_steps: int | None = None
    """Cut evaluation episodes after this many steps (default: the env's own limit)."""
    eval_mode: Literal["recurrent", "window"] = "recurrent"
    """How the agent acts in evaluation: recurrent (state carried, O(1) per step for Aaren) or
    window (re-run the last K steps, as DT)."""
    checkpoint_every: int = 1000
    """Write the checkpoint (atomically) every N steps, and at the end."""
    log_every: int = 50
    """Append training metrics to metrics.jsonl every N steps."""
    run_dir: Path | None = None
    """Output directory (checkpoint/, config.json, metrics.jsonl). Default:
    runs/{env}__{backbone}__{seed}__{time}."""
    resume: bool = False
    """Continue the run in --run-dir from its checkpoint (same config required)."""
    progress: bool = True
    """Show a progress bar."""

    # ---- Weights & Biases (opt-in) ----
    track: bool = False
    """Log to Weights & Biases (offline mode when there is no network)."""
    wandb_project: str = "aaren-rl"
    """W&B project."""
    wandb_entity: str | None = None
    """W&B entity (team or user)."""
    wandb_group: str | None = None
    """W&B group, e.g. to gather seeds of one experiment."""

    def __post_init__(self) -> None:
        checks = {
            "context_length": self.context_length,
            "episode_length": self.episode_length,
            "steps": self.steps,
            "eval_num_envs": self.eval_num_envs,
            "checkpoint_every": self.checkpoint_every,
            "log_every": self.log_every,
            "max_timestep": self.max_timestep,
        }
        for name, value in checks.items():
            if value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.eval_episodes < 0:
            raise ValueError(f"--eval-episodes must be >= 0, got {self.eval_episodes}")
        if self.eval_every < 0:
            raise ValueError(f"--eval-every must be >= 0, got {self.eval_every}")
        if self.return_scale <= 0 or self.learning_rate <= 0:
            raise ValueError("--return-scale and --learning-rate must be positive")
        if self.backbone not in ("aaren", "transformer"):
            raise ValueError(f"unknown backbone {self.backbone!r}; choose aaren or transformer")
        # The model config validates the rest (dim divisible by heads, dropout range).
        self.net_config  # noqa: B018

    # ---- derived values ----

    @property
    def resolved_recipe(self) -> str:
        if self.recipe != "auto":
            return self.recipe
        return "episode" if self.backbone == "aaren" else "window"

    @property
    def window_length(self) -> int:
        """Training window length in timesteps for the resolved recipe."""
        return self.episode_length if self.resolved_recipe == "episode" else self.context_length

    @property
    def resolved_batch_size(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        return 4 if self.resolved_recipe == "episode" else 64

    @property
    def resolved_warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else min(10000, self.steps // 10)

    @property
    def net_config(self) -> BackboneConfig:
        return BackboneConfig(
            dim=self.dim, num_layers=self.num_layers, num_heads=self.num_heads, dropout=self.dropout
        )

    def default_run_dir(self, env_name: str) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return Path("runs") / f"{env_name}__{self.backbone}__{self.seed}__{stamp}"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["run_dir"] = None if self.run_dir is None else str(self.run_dir)
        return d


def config_differences(saved: dict[str, Any], current: TrainConfig) -> list[str]:
    """Fields (other than the resumable ones) whose values differ from a saved config."""
    now = current.to_dict()
    defaults = TrainConfig().to_dict()
    diffs = []
    for key in sorted(set(saved) | set(now)):
        if key in RESUMABLE_FIELDS or key == "run_dir":
            continue
        if key not in saved and now.get(key) == defaults.get(key):
            continue  # a field newer than the run, left at its default: the same run
        if saved.get(key) != now.get(key):
            diffs.append(f"{key}: run has {saved.get(key)!r}, command line gives {now.get(key)!r}")
    return diffs
