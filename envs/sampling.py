"""Training batches from an :class:`~envs.datasets.OfflineDataset`.

Two recipes (docs/design.md §4):

- ``window`` (:class:`WindowSampler`): DT's K-step windows. A trajectory is drawn with
  probability proportional to its length, the start uniformly in ``[0, T-1]`` (official DT
  ``experiment.py`` ``get_batch``); a window that runs past the end is shorter and
  **right-padded**. Deviation from DT: DT left-pads; we right-pad because our backbones are
  causal, so right padding can never change a real position's output (docs/design.md §4).
- ``episode`` (:class:`EpisodeSampler`): episode-aligned windows starting at ``t = 0`` and
  covering up to ``context_length`` steps (e.g. 1000 = a whole MuJoCo episode), for training
  the recurrent mode on the contexts it will act with.

Both samplers own a ``numpy.random.Generator`` and expose ``state_dict()`` /
``load_state_dict()`` so that a resumed run draws exactly the same batches.

Example:
    >>> sampler = WindowSampler(ds, context_length=20, batch_size=64, return_scale=1000.0,
    ...                         state_mean=ds.state_mean, state_std=ds.state_std, seed=0)
    >>> batch = sampler.sample()  # doctest: +SKIP
    >>> batch.observations.shape  # (64, 20, obs_dim)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from aaren_rl.envs.datasets import OfflineDataset
from aaren_rl.errors import ConfigError, DatasetError


@dataclass
class Batch:
    """One training batch; padding is on the right, after the real tokens.

    Attributes:
        returns_to_go: (B, K, 1) float32, already divided by ``return_scale``.
        observations: (B, K, obs_dim) float32, already ``(obs - mean) / std``.
        actions: (B, K, act_dim) float32.
        timesteps: (B, K) int64, the step index within the episode.
        mask: (B, K) bool, True at real tokens; ``mask[b]`` is a prefix of Trues.

    K is the longest real window in the batch (at most the sampler's ``context_length``).
    """

    returns_to_go: torch.Tensor
    observations: torch.Tensor
    actions: torch.Tensor
    timesteps: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            **{
                f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                for f in fields(self)
            }
        )


class _SamplerBase:
    """Flattens the dataset once; every sample is then a few vectorised gathers."""

    def __init__(
        self,
        dataset: OfflineDataset,
        context_length: int,
        batch_size: int,
        return_scale: float,
        state_mean: np.ndarray | None = None,
        state_std: np.ndarray | None = None,
        seed: int = 0,
        anchor: str = "start",
    ) -> None:
        if anchor not in ("start", "end"):
            raise ConfigError(f"anchor must be start or end, got {anchor!r}.")
        self.anchor = anchor
        if context_length < 1 or batch_size < 1:
            raise ConfigError(
                f"context_length and batch_size must be >= 1, got {context_length}, {batch_size}."
            )
        if return_scale <= 0:
            raise ConfigError(f"return_scale must be > 0, got {return_scale}.")
        if not dataset.trajectories:
            raise DatasetError(f"{dataset.spec}: no trajectories to sample from.")
        self.context_length = int(context_length)
        self.batch_size = int(batch_size)
        self.return_scale = float(return_scale)
        mean = dataset.state_mean if state_mean is None else np.asarray(state_mean)
        std = dataset.state_std if state_std is None else np.asarray(state_std)

        trajs = dataset.trajectories
        self.lengths = np.array([len(t) for t in trajs], dtype=np.int64)  # (N_traj,)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])  # (N_traj,)
        # Flat arrays with one zero row appended: padded positions gather index -1 (the zero).
        obs = np.concatenate([t.observations for t in trajs]).astype(np.float32)
        obs = (obs - mean.astype(np.float32)) / std.astype(np.float32)
        self._obs = _with_zero_row(obs)
        self._act = _with_zero_row(np.concatenate([t.actions for t in trajs]).astype(np.float32))
        rtg = np.concatenate([t.returns_to_go for t in trajs]).astype(np.float32)
        self._rtg = _with_zero_row(rtg[:, None] / np.float32(self.return_scale))
        self._ts = _with_zero_row(np.concatenate([t.timesteps for t in trajs]).astype(np.int64))
        self._p = self.lengths / self.lengths.sum()  # P(traj) proportional to its length
        self.rng = np.random.default_rng(seed)

    def _windows(self, traj_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(start, real length) of one window in each drawn trajectory, both (B,)."""
        raise NotImplementedError

    def sample(self) -> Batch:
        """Draw one batch. See the class docstring for how windows are chosen."""
        traj_idx = self.rng.choice(len(self.lengths), size=self.batch_size, p=self._p)
        start, real = self._windows(traj_idx)  # (B,) start within each trajectory, (B,) >= 1
        # Only as long as the longest real window: right padding beyond it would be pure
        # waste (a causal model's real outputs never depend on it). Episode windows of up
        # to 1000 steps over ~400-step episodes would otherwise be half padding.
        k = np.arange(int(real.max()))
        mask = k[None, :] < real[:, None]  # (B, K), right padding
        flat = np.where(mask, (self.offsets[traj_idx] + start)[:, None] + k[None, :], -1)
        return Batch(
            returns_to_go=torch.from_numpy(self._rtg[flat]),
            observations=torch.from_numpy(self._obs[flat]),
            actions=torch.from_numpy(self._act[flat]),
            timesteps=torch.from_numpy(self._ts[flat]),
            mask=torch.from_numpy(mask),
        )

    def __iter__(self):
        while True:
            yield self.sample()

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state: the generator state (sampling is otherwise deterministic)."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


def _with_zero_row(a: np.ndarray) -> np.ndarray:
    return np.concatenate([a, np.zeros((1,) + a.shape[1:], dtype=a.dtype)])


class WindowSampler(_SamplerBase):
    """K-step windows, trajectory ~ length, right-padded.

    ``anchor="start"`` (official DT): the start is uniform on ``[0, T-1]``; a window that
    runs past the episode's end is shorter. ``anchor="end"`` (d3rlpy): the last step is
    uniform on ``[0, T-1]``; a window that would begin before ``t = 0`` is shorter. Either
    way every real step is equally likely to be drawn.

    Args:
        dataset: the offline dataset.
        context_length: K, the window length.
        batch_size: B.
        return_scale: returns-to-go are divided by this (DT: 1000 for MuJoCo).
        state_mean, state_std: (obs_dim,) normalisation; default the dataset's own.
        seed: seeds this sampler's own generator.
        anchor: "start" or "end", see above.
    """

    def _windows(self, traj_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        length = self.lengths[traj_idx]
        # floor(u * T) is uniform on 0..T-1 for each drawn trajectory, in one call
        t = np.floor(self.rng.random(len(traj_idx)) * length).astype(np.int64)
        if self.anchor == "end":
            start = np.maximum(t - self.context_length + 1, 0)
            return start, t - start + 1
        return t, np.minimum(self.context_length, length - t)


class EpisodeSampler(_SamplerBase):
    """Episode-aligned windows: start at t = 0, cover up to ``context_length`` steps.

    Same arguments as :class:`WindowSampler`; use ``context_length`` >= the longest episode
    (1000 for MuJoCo) to train on whole episodes. Trajectories are drawn proportional to length.
    Windows always start at ``t = 0``: ``anchor`` must be "start".
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.anchor != "start":
            raise ConfigError(
                "episode windows start at t = 0: anchor 'end' is for the window recipe."
            )

    def _windows(self, traj_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        start = np.zeros(len(traj_idx), dtype=np.int64)
        return start, np.minimum(self.context_length, self.lengths[traj_idx])


SAMPLERS: dict[str, type[_SamplerBase]] = {"window": WindowSampler, "episode": EpisodeSampler}


def make_sampler(recipe: str, dataset: OfflineDataset, **kwargs: Any) -> _SamplerBase:
    """Build a sampler by recipe name: ``"window"`` or ``"episode"``; kwargs as the classes."""
    try:
        cls = SAMPLERS[recipe]
    except KeyError:
        raise ConfigError(
            f"Unknown sampling recipe {recipe!r}; choose one of {sorted(SAMPLERS)}."
        ) from None
    return cls(dataset, **kwargs)
