"""The configuration of ``aaren-finetune``: one typed dataclass, parsed by tyro into ``--help``.

Defaults follow the Online Decision Transformer (Zheng, Zhang, Grover 2022) where it sets
them (replay of 1000 trajectories, AdamW lr 1e-4 and weight decay 5e-4, gradient clip 0.25,
initial temperature 0.1 with its own Adam at 1e-4, target entropy -|A|, an exploration
return-to-go twice the evaluation one) and the offline trainer's otherwise. What the
checkpoint already fixes (model, normalisation, return scale, context length, evaluation
target) is read from it, never repeated here.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aaren_rl.cli import check_minimums
from aaren_rl.errors import ConfigError
from aaren_rl.eval.horizon import HORIZON_CANDIDATES, check_horizon_candidates
from aaren_rl.train.config import MAX_SEED

__all__ = ["RESUMABLE_FIELDS", "FinetuneConfig"]

# Fields that may change between an interrupted run and its --resume.
RESUMABLE_FIELDS = (
    "resume",
    "env_steps",
    "track",
    "wandb_project",
    "wandb_entity",
    "wandb_group",
    "progress",
)

# Fields added after runs had been saved, with the value those runs ran with (a resumed run
# must keep it: pass it, or the resume is refused naming the field).
VALUES_BEFORE_THE_FIELD: dict[str, Any] = {
    "train_horizon": "off",
    "lr_decay": "none",
    "final_lr_fraction": 0.1,
    "replay_eviction": "oldest",
    "memory_horizon": "checkpoint",
    "horizon_candidates": list(HORIZON_CANDIDATES),
    "horizon_episodes": 10,
}

# Fields whose saved values an earlier version spelled otherwise: (field, old) -> today's.
# --train-horizon was a boolean flag for a few commits before it became {auto,on,off}.
RENAMED_VALUES: dict[tuple[str, Any], Any] = {
    ("train_horizon", True): "on",
    ("train_horizon", False): "off",
}


@dataclass
class FinetuneConfig:
    """Fine-tune an offline Decision agent online (Online Decision Transformer style)."""

    checkpoint: Path | None = None
    """The offline checkpoint to start from (a run's checkpoint/ folder, from aaren-train or
    aaren-finetune). Required unless --resume."""
    dataset: str | None = None
    """Dataset whose best trajectories seed the replay buffer (d4rl:PATH, minari:ID,
    demo:hopper). Default: the one recorded in the checkpoint."""
    seed_trajectories: int | None = None
    """Offline trajectories (the highest-return ones) put in the buffer first. Default:
    --replay-size; 0 starts from an empty buffer."""
    env: str | None = None
    """Environment to act in. Default: the checkpoint's."""

    # ---- budget and collection ----
    env_steps: int = 5000
    """Online budget in environment steps (ODT's full budget is 200k transitions)."""
    num_envs: int = 4
    """Environments stepped in lockstep; each collection round plays one episode in each."""
    updates_per_env_step: float = 0.3
    """Gradient steps per collected environment step (ODT: 300 per ~1000-step episode)."""
    replay_size: int = 1000
    """Replay buffer capacity in trajectories (ODT: 1000)."""
    replay_eviction: Literal["oldest", "lowest-return"] = "oldest"
    """Which trajectories leave the full buffer: oldest (FIFO, ODT) or lowest-return (the
    lowest episode returns first, offline or online alike: a new episode stays only if it
    beats the weakest one held; not ODT's)."""
    exploration_return: float | None = None
    """Return-to-go that collection episodes start from. Default: twice the evaluation target
    (ODT: 7200 for Hopper's 3600)."""
    eval_target_return: float | None = None
    """Return-to-go of the deterministic evaluation. Default: the checkpoint's target."""
    mode: Literal["auto", "recurrent", "window"] = "auto"
    """How the agent acts (collection and evaluation): recurrent (Aaren: the fused O(1) step;
    Transformer: a KV cache) or window (re-run the last K steps). auto: recurrent for Aaren,
    window for the Transformer."""
    max_episode_steps: int | None = None
    """Cut collection and evaluation episodes after this many steps (default: the env's limit)."""
    memory_horizon: str = "checkpoint"
    """Aaren acting recurrently: the memory horizon it acts with (and, with --train-horizon,
    trains with). checkpoint: the offline checkpoint's. choose: the best of
    --horizon-candidates by return on validation episodes played once, before the first
    collection (an online choice: legitimate here, since fine-tuning acts in the environment
    anyway; the summary records it as memory_horizon_choice). A number: that horizon in
    timesteps (0: the whole episode)."""
    horizon_candidates: tuple[int, ...] = HORIZON_CANDIDATES
    """With --memory-horizon choose: the horizons tried (0: the whole episode)."""
    horizon_episodes: int = 10
    """With --memory-horizon choose: validation episodes per candidate (env seeds 1,000,000 +
    100 x seed + i, none of them an evaluation episode)."""

    # ---- updates ----
    recipe: Literal["auto", "window", "episode"] = "auto"
    """Training windows drawn from the buffer: window (K steps, ODT) or episode (from t = 0).
    auto: the checkpoint's offline recipe."""
    episode_length: int = 1000
    """Longest window of the episode recipe, in timesteps."""
    batch_size: int | None = None
    """Windows per gradient step. Default: 64 for window, 4 for episode (the offline ones)."""
    train_horizon: Literal["auto", "on", "off"] = "auto"
    """Train as you act: updates forget as the agent acts. With H the checkpoint's memory
    horizon, each token's score gains its timestep over H in the training forward, which is
    exactly the acting state's aging (docs/online.md, "Train as you act"). on: required
    (Aaren acting recurrently); off: exact attention over each training window, as offline
    training; auto: on for Aaren acting recurrently, off otherwise. H = 0: all the same."""
    train_memory_horizon: int | None = None
    """With --train-horizon on (or auto where it applies): updates forget with this horizon
    instead of the acting one (the agent still acts with the checkpoint's), so training no
    longer equals acting. Larger than the acting horizon, the agent acts with less memory
    than it trains with (measured in docs/online.md, "Train as you act"). Default: the
    acting horizon (exact)."""
    decision_weight: bool = False
    """Weight the loss at each training window's last real step by the window's length
    (aaren-train --decision-weight): with the episode recipe, a memory task's decision (the
    T-Maze's last step) weighs as much as the rest of the episode. The entropy term and the
    temperature stay unweighted."""
    objective: Literal["likelihood", "mse"] = "likelihood"
    """likelihood: ODT's, -(log p(a) + T H) with the learned temperature. mse: the offline
    loss on the mean only (tanh(mean) against the actions, summed over action dimensions;
    cross-entropy for discrete actions); the log-std stays at --init-std (fixed exploration
    noise) and the temperature is not used. A control for checkpoints trained with MSE."""
    learning_rate: float = 1e-4
    """AdamW learning rate (ODT)."""
    weight_decay: float = 5e-4
    """AdamW weight decay (ODT online)."""
    warmup_steps: int | None = None
    """Linear warm-up of the learning rate over this many updates (fresh optimiser moments).
    Default: min(1000, total updates // 10). Give it explicitly to extend a run with --resume
    and a larger --env-steps."""
    lr_decay: Literal["none", "cosine"] = "none"
    """After the warm-up: none keeps the learning rate (ODT); cosine lowers it along a half
    cosine to --final-lr-fraction of it at the end of the budget's updates, and holds it
    there. The decay's length is fixed when the run starts: a run extended with --resume and
    a larger --env-steps goes on at the final rate."""
    final_lr_fraction: float = 0.1
    """With --lr-decay cosine: the learning rate at the end, as a fraction of --learning-rate."""
    grad_clip: float = 0.25
    """Gradient norm clip."""
    init_std: float = 0.1
    """Initial standard deviation (pre-tanh) of the new log-std head; its weights start at 0, so
    every state starts with this exploration noise and the offline mean is unchanged."""
    init_temperature: float = 0.1
    """Initial entropy temperature (ODT)."""
    temperature_lr: float = 1e-4
    """Adam learning rate of the log-temperature (ODT)."""
    target_entropy: float | None = None
    """Entropy the temperature steers towards. Default: -|A| for continuous actions (ODT),
    0.1 log(n) for n discrete actions."""

    # ---- evaluation, checkpoints, logging ----
    eval_every: int = 1000
    """Evaluate the deterministic policy every N environment steps (and before and after)."""
    eval_episodes: int = 10
    """Episodes per evaluation (0: none)."""
    eval_num_envs: int = 2
    """Parallel environments per evaluation."""
    checkpoint_every: int = 2000
    """Write the checkpoint (weights, optimisers, RNGs, replay buffer) every N env steps."""
    run_dir: Path | None = None
    """Output directory. Default: runs/finetune__{env}__{backbone}__{seed}__{time}."""
    resume: bool = False
    """Continue the run in --run-dir from its checkpoint (same config required)."""
    seed: int = 0
    """Seeds updates, batch draws, exploration noise and episode resets (0 .. 2147483647).
    Evaluation episodes are seed * eval_episodes + i: different seeds play different ones."""
    threads: int | None = None
    """torch CPU threads for updates (acting always uses one). Default: the cores available."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train and act: auto picks cuda when available."""
    progress: bool = True
    """Show a progress bar over environment steps."""
    track: bool = False
    """Log to Weights & Biases (offline mode when there is no network)."""
    wandb_project: str = "aaren-rl"
    """W&B project."""
    wandb_entity: str | None = None
    """W&B entity (team or user)."""
    wandb_group: str | None = None
    """W&B group."""

    def __post_init__(self) -> None:
        if isinstance(self.horizon_candidates, list):  # from a saved config.json: no tuples
            self.horizon_candidates = tuple(self.horizon_candidates)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first flag whose value cannot work."""
        if self.checkpoint is None and not self.resume:
            raise ConfigError(
                "--checkpoint is required: the offline checkpoint to fine-tune (e.g. "
                "runs/NAME/checkpoint from aaren-train)"
            )
        if self.resume and self.run_dir is None:
            raise ConfigError("--resume needs --run-dir DIR: the run to continue")
        mins = [
            ("--env-steps", self.env_steps, 1),
            ("--num-envs", self.num_envs, 1),
            ("--replay-size", self.replay_size, 1),
            ("--episode-length", self.episode_length, 1),
            ("--eval-every", self.eval_every, 1),
            ("--eval-episodes", self.eval_episodes, 0),
            ("--eval-num-envs", self.eval_num_envs, 1),
            ("--checkpoint-every", self.checkpoint_every, 1),
            ("--horizon-episodes", self.horizon_episodes, 1),
        ]
        optional = [
            ("--seed-trajectories", self.seed_trajectories, 0),
            ("--batch-size", self.batch_size, 1),
            ("--warmup-steps", self.warmup_steps, 0),
            ("--threads", self.threads, 1),
            ("--max-episode-steps", self.max_episode_steps, 1),
            ("--train-memory-horizon", self.train_memory_horizon, 1),
        ]
        check_minimums(mins + [(f, v, lo) for f, v, lo in optional if v is not None])
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"--seed must be in [0, {MAX_SEED}], got {self.seed}")
        check_horizon_candidates(self.horizon_candidates)
        if self.memory_horizon not in ("checkpoint", "choose") and not (
            self.memory_horizon.isascii() and self.memory_horizon.isdigit()
        ):
            raise ConfigError(
                "--memory-horizon must be checkpoint, choose or a number of timesteps >= 0 "
                f"(0: the whole episode), got {self.memory_horizon!r}"
            )
        if (self.seed + 1) * self.eval_episodes > 2**32:
            raise ConfigError(
                f"--seed {self.seed} x --eval-episodes {self.eval_episodes}: the evaluation "
                "episodes (seed * eval_episodes + i) must stay below 2**32"
            )
        positive = {
            "--updates-per-env-step": self.updates_per_env_step,
            "--learning-rate": self.learning_rate,
            "--grad-clip": self.grad_clip,
            "--init-std": self.init_std,
            "--init-temperature": self.init_temperature,
            "--temperature-lr": self.temperature_lr,
        }
        for flag, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{flag} must be a finite number > 0, got {value}")
        if not (math.isfinite(self.final_lr_fraction) and 0 <= self.final_lr_fraction <= 1):
            raise ConfigError(
                f"--final-lr-fraction must lie in [0, 1], got {self.final_lr_fraction}"
            )
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(
                f"--weight-decay must be a finite number >= 0, got {self.weight_decay}"
            )
        if not math.exp(-5.0) < self.init_std < math.exp(2.0):
            raise ConfigError(
                f"--init-std must lie in (0.0067, 7.39) (ODT's bounds), got {self.init_std}"
            )
        for flag, value in {
            "--exploration-return": self.exploration_return,
            "--eval-target-return": self.eval_target_return,
            "--target-entropy": self.target_entropy,
        }.items():
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"{flag} must be a finite number, got {value}")

    # ---- derived values ----

    @property
    def total_updates(self) -> int:
        """Gradient steps the whole budget buys (about; rounds end on episode boundaries)."""
        return int(self.env_steps * self.updates_per_env_step)

    @property
    def resolved_warmup(self) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return min(1000, self.total_updates // 10)

    def default_run_dir(self, env_name: str, backbone: str) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return Path("runs") / f"finetune__{env_name}__{backbone}__{self.seed}__{stamp}"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["horizon_candidates"] = list(d["horizon_candidates"])  # as JSON saves it
        for key in ("run_dir", "checkpoint"):
            d[key] = None if d[key] is None else str(d[key])
        return d


def finetune_config_differences(saved: dict[str, Any], current: FinetuneConfig) -> list[str]:
    """Fields (other than the resumable ones and run_dir) whose values differ from a saved
    config."""
    now = current.to_dict()
    # a field newer than the saved run: the value that run had (what the code did then)
    old = {**VALUES_BEFORE_THE_FIELD, **saved}
    old = {k: RENAMED_VALUES.get((k, v), v) if isinstance(v, bool) else v for k, v in old.items()}
    return [
        f"{key}: run has {old.get(key)!r}, command line gives {now.get(key)!r}"
        for key in sorted(set(old) | set(now))
        if key not in RESUMABLE_FIELDS and key != "run_dir" and old.get(key) != now.get(key)
    ]
