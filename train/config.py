"""The training configuration: one typed dataclass, parsed by tyro into ``aaren-train --help``.

Every field's docstring is its help text. The model's size is the model library's own
``BackboneConfig``, nested as ``model`` (flags ``--model.dim``, ``--model.num-layers``,
``--model.num-heads``, ``--model.dropout``, ...), so it is declared once. Derived values (the
recipe a backbone uses by default, the warm-up length, the run directory) are properties,
never attributes set after parsing.

Values are checked by :meth:`TrainConfig.validate` (one :class:`~aaren_rl.errors.ConfigError`
naming the flag), which ``train()`` and ``aaren-train`` call before anything is read or
written. It is a method rather than ``__post_init__`` so that tyro's parse checks types and
our check, run after it, reports a bad value on one line.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aaren_rl.aaren_policy import BackboneConfig
from aaren_rl.aaren_policy.backbone import ACTIVATION_BEFORE_THE_FIELD
from aaren_rl.errors import ConfigError
from aaren_rl.eval.horizon import HORIZON_CANDIDATES, check_horizon_candidates
from aaren_rl.eval.offline_horizon import HOLDOUT_FRACTION

__all__ = ["FLAGS_ONLY", "MAX_SEED", "TrainConfig", "config_differences", "flatten_config"]

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
    "memory_horizon",  # acting defaults: training does not use them
    "horizon_candidates",
    "offline_criterion",
    "download",  # FLAGS_ONLY: fetching the data does not change it (the fingerprint is checked)
)

# What reaches the network or Weights & Biases: on --resume these come from flags (or the
# built-in defaults) only, never from the run's config.json, which anyone may have crafted
# (docs/security.md, "Folders, sizes and time": trust from a file).
FLAGS_ONLY = ("track", "wandb_project", "wandb_entity", "wandb_group", "download")

# Fields added after runs had been saved, with the value those older runs used: a run
# directory whose config.json lacks one of them ran with this value, whatever today's
# default is (docs/research/recipe.md, "The recipe at 10k steps"). embed_init is not here: it only
# sets initial weights, and a resumed run loads its own.
VALUES_BEFORE_THE_FIELD = {
    "model.activation": ACTIVATION_BEFORE_THE_FIELD,
    "window_anchor": "start",
    "loss_reduction": "mean",
    "padding": "right",
    "state_encoder": "linear",
    "model.query_init_std": 0.02,
    "horizon_selection": "online",  # runs before it chose the horizon in the environment
    "curriculum": [],
    "decision_weight": False,
    "holdout_fraction": HOLDOUT_FRACTION,
    "train_memory_horizon": 0,
}

# Seeds feed torch.manual_seed, numpy's generators and Gymnasium's reset (seed + rank, seed +
# episode): 2**31 - 1 keeps every derived seed a valid non-negative 64-bit integer.
MAX_SEED = 2**31 - 1


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

    # ---- model size (DT defaults: dim 128, 3 layers, 1 head, dropout 0.1) ----
    model: BackboneConfig = field(default_factory=BackboneConfig)
    """Size of the backbone stack (the model library's BackboneConfig)."""
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
    """Gradient norm clip (> 0)."""
    return_scale: float = 1000.0
    """Returns-to-go are divided by this (DT uses 1000 for MuJoCo)."""
    seed: int = 0
    """Seeds the model, dropout and the batch sampler (0 .. 2147483647)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: auto picks cuda when available."""
    threads: int | None = None
    """torch CPU threads per process. Default: the cores available to the process
    (os.sched_getaffinity); grids of runs side by side pass 1."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Training precision. bf16: bfloat16 autocast around the forward pass (weights,
    optimiser, loss, LayerNorm statistics and Aaren's scan stay float32; checkpoints are
    float32). auto: bf16 where the CPU (AVX512-BF16/AMX) or GPU computes it natively, else
    fp32. See docs/research/recipe.md for the measured speed and loss curves."""
    compile: bool = False
    """torch.compile the model for training (off: measured slower on CPU, after a minutes-long
    warm-up; see docs/research/recipe.md)."""

    # ---- ablation knobs (docs/training.md, "Precision, speed and recipe") ----
    state_encoder: Literal["linear", "mlp"] = "linear"
    """Observation embedding: linear (DT) or mlp (Linear-ReLU-Linear, 128 hidden)."""
    loss_reduction: Literal["mean", "sum"] = "sum"
    """Squared action error over action dimensions: mean (DT) or sum (d3rlpy); either way
    averaged over real positions. sum scales the gradient by act_dim before the 0.25 clip."""
    embed_init: Literal["gpt2", "torch"] = "torch"
    """Initial weights of the return/state/action embeddings and the action head: gpt2
    (N(0, 0.02), zero biases) or torch (PyTorch's default Linear init, as official DT and
    d3rlpy)."""
    return_in_state_token: bool = False
    """Add a linear embedding of the return-to-go to the state token too (the token the
    action is read at), so the conditioning return reaches the action without attention.
    See docs/research/recipe.md, "Recurrent acting and the return"."""
    window_anchor: Literal["start", "end"] = "end"
    """How the window recipe picks a window: start (uniform start, a window past the episode's
    end is shorter: official DT) or end (uniform last step, a window before the episode's
    start is shorter: d3rlpy). Either way each real step of a trajectory is equally likely
    to be drawn; they differ in which windows come out short. The episode recipe's windows
    always start at t = 0 and ignore it."""
    padding: Literal["right", "left"] = "left"
    """Where short training windows are padded. right: after the real steps (causal models
    never see it). left: before them, as DT/d3rlpy, with the padded tokens masked out."""

    # ---- memory tasks (docs/memory.md: T-Maze from aaren-train, as aaren-bench memory) ----
    curriculum: tuple[int, ...] = ()
    """Train in stages on episodes of growing length: stage i draws only the episodes of at
    most curriculum[i] timesteps; --steps is split evenly over the stages (e.g. 11 31 101 301
    on T-Maze data of L = 10, 30, 100, 300: an episode of L has L + 1 steps). Empty: every
    episode throughout."""
    decision_weight: bool = False
    """Weight the loss of each training window's last real step by the window's length (with
    the episode recipe: the episode's last step, the T-Maze decision, weighs as much as the
    rest of the episode), as aaren-bench memory trains."""

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
    memory_horizon: int | None = None
    """Timesteps of memory when an Aaren agent acts recurrently: each step, every earlier
    token's attention score drops by 1/H, so a token H steps old weighs e^-1 of a new one (a
    soft window on the constant-size state); 0: the whole episode, exact. Default (None):
    chosen at the end of training for continuous actions among --horizon-candidates, as
    --horizon-selection says; 0 for discrete actions (the memory tasks: T-Maze, POPGym) and
    for online selection without evaluation (--eval-episodes 0). Saved in the checkpoint as
    the acting default (aaren-eval --memory-horizon overrides it); training itself does not
    use it. See docs/research/horizon.md, "Offline horizon selection"."""
    train_memory_horizon: int = 0
    """Aaren: train as you act with memory horizon H. The training forward forgets as
    recurrent acting with H does (each token's score + its timestep / H, exactly the acting
    state's aging), and the agent acts with H (unless --memory-horizon says otherwise): no
    horizon is chosen after training, none is held out. 0: exact attention in training, the
    horizon chosen as --horizon-selection says. See docs/research/horizon.md, "Train as you act"."""
    horizon_candidates: tuple[int, ...] = HORIZON_CANDIDATES
    """Memory horizons the end of training chooses from (with --memory-horizon unset)."""
    horizon_selection: Literal["offline", "online"] = "offline"
    """How the memory horizon is chosen (Aaren, continuous actions, --memory-horizon unset).
    offline: from the dataset alone. Before training, --holdout-fraction of the episodes
    (seeded by --seed, at least 5, at most a fifth; their indices are saved in the
    checkpoint) are held out and never trained on; at the end each candidate is scored by
    the action error of the model acting recurrently over the higher-return half of them.
    online: by return on --eval-episodes validation episodes played in the environment (env
    seeds 1,000,000 + 100 x seed + i, apart from every evaluation's): model selection in the
    environment, reported as "online"."""
    holdout_fraction: float = HOLDOUT_FRACTION
    """Offline horizon selection: the share of episodes held out of training (at least 5,
    at most a fifth of the dataset's)."""
    offline_criterion: Literal["own-actions", "teacher-forced", "target-return"] = "own-actions"
    """Offline horizon selection: how the held-out episodes are replayed when scoring.
    own-actions: the model reads its own previous actions, as when acting, and the episode's
    returns-to-go; teacher-forced: the dataset's previous actions; target-return: its own
    actions, conditioned on the target return less the rewards so far, as the agent acts.
    All are logged; this one decides."""
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
        if isinstance(self.model, dict):  # from a saved config.json
            self.model = BackboneConfig(**self.model)
        if isinstance(self.horizon_candidates, list):  # JSON has no tuples
            self.horizon_candidates = tuple(self.horizon_candidates)
        if isinstance(self.curriculum, list):
            self.curriculum = tuple(self.curriculum)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first flag whose value cannot work."""
        at_least = {
            "context_length": (self.context_length, 1),
            "episode_length": (self.episode_length, 1),
            "steps": (self.steps, 1),
            "eval_num_envs": (self.eval_num_envs, 1),
            "checkpoint_every": (self.checkpoint_every, 1),
            "log_every": (self.log_every, 1),
            "max_timestep": (self.max_timestep, 1),
            "eval_episodes": (self.eval_episodes, 0),
            "eval_every": (self.eval_every, 0),
            "batch_size": (self.batch_size, 1),
            "warmup_steps": (self.warmup_steps, 0),
            "threads": (self.threads, 1),
            "eval_max_episode_steps": (self.eval_max_episode_steps, 1),
            "memory_horizon": (self.memory_horizon, 0),
            "train_memory_horizon": (self.train_memory_horizon, 0),
            "model.chunk_size": (self.model.chunk_size, 1),  # the rest BackboneConfig checks
        }
        for name, (value, low) in at_least.items():
            if value is not None and value < low:
                raise ConfigError(f"{_flag(name)} must be >= {low}, got {value}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"--seed must be in [0, {MAX_SEED}], got {self.seed}")
        positive = {
            "learning_rate": self.learning_rate,
            "grad_clip": self.grad_clip,
            "return_scale": self.return_scale,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{_flag(name)} must be a finite number > 0, got {value}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(
                f"--weight-decay must be a finite number >= 0, got {self.weight_decay}"
            )
        check_horizon_candidates(self.horizon_candidates)
        if not (math.isfinite(self.holdout_fraction) and 0 < self.holdout_fraction < 1):
            raise ConfigError(f"--holdout-fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.curriculum and (min(self.curriculum) < 1 or len(self.curriculum) > self.steps):
            raise ConfigError(
                f"--curriculum must be episode lengths >= 1, at most one per step, got "
                f"{self.curriculum}"
            )
        if self.target_return is not None and not math.isfinite(self.target_return):
            raise ConfigError(f"--target-return must be a finite number, got {self.target_return}")
        if self.memory_horizon is not None and self.backbone != "aaren":
            raise ConfigError(  # the rule of aaren-eval and DecisionAgent.load (agents/base.py)
                f"--memory-horizon is for --backbone aaren (a {self.backbone} acting "
                "recurrently keeps its whole KV cache); drop it"
            )
        if self.train_memory_horizon and self.backbone != "aaren":
            raise ConfigError(
                f"--train-memory-horizon is for --backbone aaren (the forgetting of its "
                f"recurrent state), not {self.backbone}; drop it"
            )
        if self.resume and self.run_dir is None:
            raise ConfigError("--resume needs --run-dir DIR: the run to continue")

    # ---- derived values ----

    @property
    def resolved_recipe(self) -> str:
        if self.recipe != "auto":
            return self.recipe
        return "episode" if self.backbone == "aaren" else "window"

    def chooses_memory_horizon(self, discrete: bool) -> bool:
        """Whether the end of training picks the memory horizon (else it is --memory-horizon,
        the --train-memory-horizon, or 0: the whole episode)."""
        if self.memory_horizon is not None or self.backbone != "aaren" or discrete:
            return False
        if self.train_memory_horizon:  # trained as it acts: the horizon is that one
            return False
        return self.horizon_selection == "offline" or self.eval_episodes > 0

    def holds_out_episodes(self, discrete: bool) -> bool:
        """Whether episodes are held out of training for the offline horizon choice."""
        return self.chooses_memory_horizon(discrete) and self.horizon_selection == "offline"

    def curriculum_stage(self, step: int) -> int:
        """The --curriculum stage of gradient step ``step`` (1-based); 0 without one."""
        n = len(self.curriculum)
        return min((step - 1) * n // self.steps, n - 1) if n else 0

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
    def resolved_threads(self) -> int:
        if self.threads is not None:
            return self.threads
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            return os.cpu_count() or 1

    @property
    def resolved_precision(self) -> str:
        """``fp32`` or ``bf16``: ``precision`` with auto decided for the training device."""
        import torch

        from aaren_rl.aaren_policy.precision import resolve_precision

        cuda = self.device == "cuda" or (self.device == "auto" and torch.cuda.is_available())
        return resolve_precision(self.precision, "cuda" if cuda else "cpu")

    @property
    def resolved_warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else min(10000, self.steps // 10)

    def default_run_dir(self, env_name: str) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return Path("runs") / f"{env_name}__{self.backbone}__{self.seed}__{stamp}"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["curriculum"] = list(self.curriculum)  # as config.json holds it (JSON has no tuples)
        d["run_dir"] = None if self.run_dir is None else str(self.run_dir)
        return d


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def config_differences(saved: dict[str, Any], current: TrainConfig) -> list[str]:
    """Fields (other than the resumable ones) whose values differ from a saved config.

    Nested fields are compared one by one (``model.dim``). A field added after the run was
    saved is compared with the value runs had before it existed (``VALUES_BEFORE_THE_FIELD``,
    else today's default), so a default that changed later cannot slip into a resumed run.
    """
    now, defaults = _flatten(current.to_dict()), _flatten(TrainConfig().to_dict())
    saved = _flatten(saved)
    diffs = []
    for key in sorted(set(saved) | set(now)):
        if key in RESUMABLE_FIELDS or key == "run_dir":
            continue
        if key not in saved:  # a field newer than the run: the run had its value before
            was = VALUES_BEFORE_THE_FIELD.get(key, defaults.get(key))
            if now.get(key) != was:
                diffs.append(
                    f"{key}: run has {was!r} (saved before the field existed), command line "
                    f"gives {now.get(key)!r}"
                )
            continue
        if saved.get(key) != now.get(key):
            diffs.append(f"{key}: run has {saved.get(key)!r}, command line gives {now.get(key)!r}")
    return diffs


def flatten_config(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config dict with nested fields as dotted keys (``model.dim``)."""
    return _flatten(d, prefix)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out
