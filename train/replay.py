"""The replay buffer of online fine-tuning: whole trajectories, FIFO, saved without pickle.

As the Online Decision Transformer's (Zheng, Zhang, Grover 2022, ``replay_buffer.py``):

- the buffer holds at most ``capacity`` **trajectories** (not transitions);
- it starts with the offline dataset's ``capacity`` highest-return trajectories, ordered
  from the lowest return to the highest, so the weakest offline episodes leave first;
- new episodes are appended and the oldest trajectories evicted first (FIFO by trajectory;
  ODT overwrites a ring slot by slot, which evicts in the same order); or, with
  ``eviction="lowest-return"`` (not ODT's), the trajectories with the lowest episode return
  leave first, the oldest of equal ones first, so a new episode stays only if it beats the
  weakest one held;
- an online episode's returns-to-go are **relabelled in hindsight** from the rewards it
  realised (:func:`hindsight_returns_to_go`), not the exploration return it was asked for:
  the model learns which return its actions actually led to.

Training windows are drawn with the offline samplers (``aaren_rl.envs.sampling``: a
trajectory with probability proportional to its length, as ODT), rebuilt over the buffer's
contents after each change and driven by one generator that lives across rebuilds.

On disk (inside a checkpoint directory, which the caller writes atomically with
``aaren_rl.fileio.atomic_directory``): ``replay.safetensors`` (the trajectories concatenated,
plus per-trajectory lengths and end flags) and ``replay.json`` (format, capacity, counts).
Reading runs a JSON parser and the safetensors reader only: never pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from aaren_rl.envs import OfflineDataset, Trajectory, make_sampler
from aaren_rl.errors import CheckpointError, ConfigError
from aaren_rl.untrusted import read_json

__all__ = [
    "REPLAY_JSON",
    "REPLAY_TENSORS",
    "ReplayBuffer",
    "hindsight_returns_to_go",
    "make_trajectory",
]

REPLAY_JSON = "replay.json"
REPLAY_TENSORS = "replay.safetensors"
FORMAT = 1
EVICTIONS = ("oldest", "lowest-return")
_ARRAYS = ("observations", "actions", "rewards", "returns_to_go", "timesteps")


def hindsight_returns_to_go(rewards: np.ndarray) -> np.ndarray:
    """Undiscounted returns-to-go from realised rewards: ``rtg[t] = sum(rewards[t:])``,
    accumulated in float64 (as the dataset loader), (T,) float32."""
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    return np.cumsum(r[::-1])[::-1].astype(np.float32)


def make_trajectory(
    observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: bool
) -> Trajectory:
    """A collected episode as a :class:`~aaren_rl.envs.Trajectory`, its returns-to-go
    relabelled in hindsight."""
    obs = np.asarray(observations, dtype=np.float32)
    rew = np.asarray(rewards, dtype=np.float32).reshape(-1)
    return Trajectory(
        observations=obs,
        actions=np.asarray(actions, dtype=np.float32),
        rewards=rew,
        returns_to_go=hindsight_returns_to_go(rew),
        timesteps=np.arange(len(rew), dtype=np.int64),
        terminated=bool(terminated),
    )


class ReplayBuffer:
    """At most ``capacity`` trajectories, oldest first (module docstring).

    Args:
        capacity: the most trajectories held (ODT: 1000).
        trajectories: the initial contents, oldest (first evicted) first.
        eviction: which trajectories leave when it is full: ``oldest`` (ODT) or
            ``lowest-return``.
    """

    def __init__(
        self,
        capacity: int,
        trajectories: list[Trajectory] | None = None,
        eviction: str = "oldest",
    ) -> None:
        if capacity < 1:
            raise ConfigError(f"--replay-size must be >= 1 trajectory, got {capacity}")
        if eviction not in EVICTIONS:
            raise ConfigError(f"--replay-eviction must be one of {EVICTIONS}, got {eviction!r}")
        self.capacity = int(capacity)
        self.eviction = eviction
        self.trajectories: list[Trajectory] = []
        self.added = 0  # online trajectories added over the buffer's life
        self.evicted = 0
        self.add(trajectories or [], online=False)

    @classmethod
    def seeded(
        cls,
        capacity: int,
        offline: list[Trajectory],
        count: int | None = None,
        eviction: str = "oldest",
    ) -> ReplayBuffer:
        """A buffer holding the ``count`` (default ``capacity``) highest-return trajectories of
        ``offline``, lowest return first (ODT). A stable sort: ties keep file order."""
        keep = capacity if count is None else min(count, capacity)
        returns = np.array([t.episode_return for t in offline], dtype=np.float64)
        order = np.argsort(returns, kind="stable")  # lowest to highest
        chosen = order[len(order) - keep :] if keep > 0 else order[:0]
        return cls(capacity, [offline[i] for i in chosen], eviction)

    def add(self, trajectories: list[Trajectory], online: bool = True) -> int:
        """Append ``trajectories`` (newest last) and evict beyond ``capacity`` (the oldest, or
        the lowest returns with ``eviction="lowest-return"``); returns how many were evicted.
        The trajectories that stay keep their order (oldest first)."""
        self.trajectories.extend(trajectories)
        if online:
            self.added += len(trajectories)
        extra = max(0, len(self.trajectories) - self.capacity)
        if extra and self.eviction == "oldest":
            del self.trajectories[:extra]
        elif extra:
            returns = np.array([t.episode_return for t in self.trajectories], dtype=np.float64)
            leave = set(np.argsort(returns, kind="stable")[:extra].tolist())  # ties: oldest
            self.trajectories = [t for i, t in enumerate(self.trajectories) if i not in leave]
        self.evicted += extra
        return extra

    def __len__(self) -> int:
        return len(self.trajectories)

    @property
    def num_transitions(self) -> int:
        return sum(len(t) for t in self.trajectories)

    def return_stats(self) -> dict[str, float]:
        """``buffer/return_min`` and ``buffer/return_mean`` over the trajectories held (what the
        updates train on; none when empty)."""
        if not self.trajectories:
            return {}
        r = np.array([t.episode_return for t in self.trajectories], dtype=np.float64)
        return {"buffer/return_min": float(r.min()), "buffer/return_mean": float(r.mean())}

    def sampler(
        self,
        recipe: str,
        rng: np.random.Generator,
        *,
        context_length: int,
        batch_size: int,
        return_scale: float,
        state_mean: np.ndarray,
        state_std: np.ndarray,
    ) -> Any:
        """A window/episode sampler over the current contents, drawing with ``rng`` (shared
        across rebuilds, so the draws continue one stream). The model's normalisation
        (``state_mean``/``state_std``) is fixed: it is the offline checkpoint's."""
        if not self.trajectories:
            raise ConfigError("the replay buffer is empty: nothing to train on")
        view = OfflineDataset(self.trajectories, state_mean, state_std, spec="replay buffer")
        sampler = make_sampler(
            recipe,
            view,
            context_length=context_length,
            batch_size=batch_size,
            return_scale=return_scale,
            state_mean=state_mean,
            state_std=state_std,
        )
        sampler.rng = rng
        return sampler

    # ---- on disk: safetensors + JSON ----------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write ``replay.safetensors`` and ``replay.json`` into ``directory`` (a temporary
        directory of ``atomic_directory``: the swap makes the write atomic)."""
        from safetensors.numpy import save_file

        trajs = self.trajectories
        arrays = {
            k: np.ascontiguousarray(np.concatenate([getattr(t, k) for t in trajs]))
            if trajs
            else np.zeros((0,), np.float32)
            for k in _ARRAYS
        }
        arrays["lengths"] = np.array([len(t) for t in trajs], dtype=np.int64)
        arrays["terminated"] = np.array([t.terminated for t in trajs], dtype=np.uint8)
        save_file(arrays, str(directory / REPLAY_TENSORS))
        meta = {
            "format": FORMAT,
            "capacity": self.capacity,
            "eviction": self.eviction,
            "trajectories": len(trajs),
            "transitions": self.num_transitions,
            "added": self.added,
            "evicted": self.evicted,
        }
        (directory / REPLAY_JSON).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path, obs_dim: int, act_dim: int) -> ReplayBuffer:
        """Read a buffer saved by :meth:`save`; :class:`CheckpointError` naming the file if it
        is missing, malformed or does not fit ``obs_dim``/``act_dim``."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        meta_path, tensor_path = directory / REPLAY_JSON, directory / REPLAY_TENSORS
        meta = read_json(meta_path, CheckpointError)
        ints = ("capacity", "trajectories", "added", "evicted")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CheckpointError(f"{meta_path} is not a replay buffer written by aaren-finetune")
        if any(type(meta.get(k)) is not int or meta[k] < 0 for k in ints):
            raise CheckpointError(f"{meta_path} is malformed: {ints} must be integers >= 0")
        try:
            arrays = load_file(str(tensor_path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{tensor_path} is missing or corrupt ({e})") from e
        eviction = meta.get("eviction", "oldest")  # absent: written before the choice existed
        if eviction not in EVICTIONS:
            raise CheckpointError(f"{meta_path} is malformed: eviction must be one of {EVICTIONS}")
        trajs = _split(arrays, meta["trajectories"], obs_dim, act_dim, tensor_path)
        buf = cls(max(meta["capacity"], 1), trajs, eviction)
        buf.added, buf.evicted = meta["added"], meta["evicted"]
        return buf


def _split(
    arrays: dict[str, np.ndarray], count: int, obs_dim: int, act_dim: int, where: Path
) -> list[Trajectory]:
    """The saved arrays cut back into trajectories, every shape and value checked."""
    missing = [k for k in (*_ARRAYS, "lengths", "terminated") if k not in arrays]
    if missing:
        raise CheckpointError(f"{where} lacks the arrays {missing}")
    lengths, total = arrays["lengths"], int(arrays["lengths"].sum()) if count else 0
    shapes = {
        "observations": (total, obs_dim),
        "actions": (total, act_dim),
        "rewards": (total,),
        "returns_to_go": (total,),
        "timesteps": (total,),
        "lengths": (count,),
        "terminated": (count,),
    }
    for key, shape in shapes.items():
        if count and arrays[key].shape != shape:
            raise CheckpointError(f"{where}: {key} has shape {arrays[key].shape}, expected {shape}")
    if count and (lengths.dtype != np.int64 or (lengths < 1).any()):
        raise CheckpointError(f"{where}: trajectory lengths must be integers >= 1")
    for key in ("observations", "actions", "rewards", "returns_to_go"):
        if count and not np.isfinite(arrays[key]).all():
            raise CheckpointError(f"{where}: {key} holds NaN or Inf")
    bounds = np.concatenate([[0], np.cumsum(lengths)]) if count else np.zeros(1, np.int64)
    out = []
    for i in range(count):
        s, e = int(bounds[i]), int(bounds[i + 1])
        out.append(
            Trajectory(
                observations=arrays["observations"][s:e].astype(np.float32, copy=False),
                actions=arrays["actions"][s:e].astype(np.float32, copy=False),
                rewards=arrays["rewards"][s:e].astype(np.float32, copy=False),
                returns_to_go=arrays["returns_to_go"][s:e].astype(np.float32, copy=False),
                timesteps=arrays["timesteps"][s:e].astype(np.int64, copy=False),
                terminated=bool(arrays["terminated"][i]),
            )
        )
    return out
