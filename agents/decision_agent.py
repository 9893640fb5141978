"""The acting agent: normalisation, return-to-go bookkeeping and per-env state around a model.

SB3-style step API over a batch of environments (the contract of ``aaren_rl.agents.base.Agent``)::

    agent.reset(num_envs)
    action = agent.predict(obs, reward, episode_start)

- ``obs`` (N, obs_dim): the current observations.
- ``reward`` (N,): the reward each env returned for the previous action (ignored where
  ``episode_start``); the agent lowers that env's return-to-go by it, as DT does.
- ``episode_start`` (N,) bool: the env has just been reset; only that env's return-to-go,
  timestep and model state restart.

Modes:
- ``"recurrent"``: the model's state is carried through the whole episode, one update per
  token (three per action). O(1) per step for Aaren; a growing KV cache for the Transformer.
  With an Aaren backbone the step is ``aaren_policy.fused.FusedAarenPolicy`` (one fused pass
  per action, the action token deferred to the next call; ``fused=False`` keeps
  ``model.act`` + ``model.observe_action``, the reference).
- ``"window"``: the last ``context_length`` steps are re-run in parallel at every action,
  as the original Decision Transformer does (the baseline and fallback).

``memory_horizon`` (Aaren, recurrent mode): a soft window on the constant-size state. Each
timestep, every earlier token's score drops by 1/H (``aaren_policy.fused.memory_decay``), so a
token H steps old weighs e^-1 of a new one; 0 attends to the whole episode exactly. Trained
checkpoints carry the value acting uses by default (``aaren-train --memory-horizon``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aaren_rl.aaren_policy import DecisionModel, __version__
from aaren_rl.aaren_policy.fused import FusedAarenPolicy, check_memory_horizon, memory_decay
from aaren_rl.agents.base import (
    check_acting_options,
    check_context_length,
    check_num_envs,
    check_target_return,
)
from aaren_rl.agents.checkpoint import load_model, save_model
from aaren_rl.agents.step_inputs import StepInputs
from aaren_rl.errors import AgentInputError, CheckpointError, ConfigError
from aaren_rl.fileio import atomic_directory

__all__ = ["MODES", "DecisionAgent"]

MODES = ("recurrent", "window")


class DecisionAgent(StepInputs):
    """A decision model with everything needed to act in an environment.

    Implements :class:`aaren_rl.agents.base.Agent` (``reset`` / ``predict``).

    Args:
        model: the decision model (put in eval mode by the agent).
        state_mean: (obs_dim,) dataset observation mean.
        state_std: (obs_dim,) dataset observation std.
        return_scale: returns-to-go are divided by this before entering the model.
        target_return: the return-to-go an episode starts from (unscaled).
        mode: ``"recurrent"`` or ``"window"``.
        context_length: K, the window length in ``"window"`` mode.
        env_id: the environment the agent was trained for (recorded in checkpoints).
        metadata: anything else to keep in a checkpoint (dataset spec, step, targets...).
        device: where the model runs.
        fused: recurrent mode with an Aaren backbone acts with ``FusedAarenPolicy`` (a
            snapshot of the weights, rebuilt whenever they change); False uses the
            unfused ``model.act`` / ``observe_action`` path. Ignored otherwise.
        sample: discrete actions are sampled from the policy's logits instead of taken by
            argmax (acts on the unfused path). Ignored for continuous actions.
        memory_horizon: H timesteps of memory when acting recurrently with an Aaren backbone
            (module docstring); 0: the whole episode. Kept in checkpoints; ignored in window
            mode and by a Transformer's KV cache.
    """

    input_error = AgentInputError

    def __init__(
        self,
        model: DecisionModel,
        state_mean: np.ndarray,
        state_std: np.ndarray,
        return_scale: float,
        target_return: float,
        mode: str = "recurrent",
        context_length: int = 20,
        env_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        device: torch.device | str = "cpu",
        fused: bool = True,
        sample: bool = False,
        memory_horizon: int = 0,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; choose one of {MODES}")
        check_context_length(context_length)
        if not return_scale > 0 or not math.isfinite(return_scale):
            raise ConfigError(f"return_scale must be a positive number, got {return_scale}")
        check_target_return(target_return)
        try:
            self.memory_horizon = check_memory_horizon(memory_horizon)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        obs_dim = model.config.obs_dim
        self.state_mean = np.asarray(state_mean, dtype=np.float32).reshape(-1)
        self.state_std = np.asarray(state_std, dtype=np.float32).reshape(-1)
        if self.state_mean.shape != (obs_dim,) or self.state_std.shape != (obs_dim,):
            raise ConfigError(
                f"state_mean/std must have shape ({obs_dim},), got {self.state_mean.shape} "
                f"and {self.state_std.shape}"
            )
        bad = np.flatnonzero(~(np.isfinite(self.state_std) & (self.state_std > 0)))
        if bad.size or not np.isfinite(self.state_mean).all():
            where = f"state_std[{bad[0]}] is {self.state_std[bad[0]]}" if bad.size else (
                "state_mean holds NaN or Inf")  # fmt: skip
            raise ConfigError(
                f"{where}: observations are divided by state_std, which must be finite and > 0 "
                "(a constant observation column gets a small floor when the dataset is loaded)"
            )
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.return_scale = float(return_scale)
        self.target_return = float(target_return)
        self.mode = mode
        self.context_length = int(context_length)
        self.env_id = env_id
        self.metadata = dict(metadata or {})
        self.num_envs = 0
        # ``fused``: whether this agent acts with the fused step; the step object itself is
        # built lazily (``_fused_policy``) and cached in ``_fused_cache``.
        self.model.sample_actions = bool(sample and model.config.discrete)
        self.fused = fused and mode == "recurrent" and model.config.backbone == "aaren"
        self.fused = self.fused and not self.model.sample_actions
        self._decay = memory_decay(self.acting_horizon or 0)  # per-timestep score drop
        self._fused_cache: FusedAarenPolicy | None = None
        # Parameters are updated in place (optimiser, load_state_dict); a module whose
        # Parameter objects are replaced needs a new agent.
        self._parameters = list(self.model.parameters())
        self._fused_cache_version: tuple[int, ...] = ()

    @property
    def obs_dim(self) -> int:
        return self.model.config.obs_dim

    @property
    def act_dim(self) -> int:
        return self.model.config.act_dim

    @property
    def acting_horizon(self) -> int | None:
        """The memory horizon this agent acts with (0: the whole episode), or None where the
        horizon does not apply (window mode, a Transformer's KV cache)."""
        aaren_recurrent = self.mode == "recurrent" and self.model.config.backbone == "aaren"
        return self.memory_horizon if aaren_recurrent else None

    # ---- episode bookkeeping ----------------------------------------------------------------

    def reset(self, num_envs: int = 1) -> None:
        """Forget everything; prepare for ``num_envs`` parallel environments."""
        num_envs = check_num_envs(num_envs)
        n, k, dev = num_envs, self.context_length, self.device
        self.num_envs = n
        self.rtg = np.full(n, self.target_return, dtype=np.float64)
        self.timestep = np.zeros(n, dtype=np.int64)
        self._started = np.zeros(n, dtype=bool)
        if self.fused:
            self.state = self._fused_policy().init_state(n, dev)
        elif self.mode == "recurrent":
            self.state = self.model.init_state(n, dev)
        else:
            self._len = np.zeros(n, dtype=np.int64)
            self._buf_rtg = torch.zeros(n, k, 1, device=dev)
            self._buf_obs = torch.zeros(n, k, self.obs_dim, device=dev)
            self._buf_act = torch.zeros(n, k, self.act_dim, device=dev)
            self._buf_t = torch.zeros(n, k, dtype=torch.long, device=dev)

    def state_nbytes(self) -> int:
        """Bytes the agent holds per batch for its model state (or window buffers)."""
        if self.fused:
            return self.state.nbytes()
        if self.mode == "recurrent":
            return self.model.backbone.state_nbytes(self.state)
        bufs = (self._buf_rtg, self._buf_obs, self._buf_act, self._buf_t)
        return sum(b.numel() * b.element_size() for b in bufs)

    # ---- acting -------------------------------------------------------------------------------

    @torch.no_grad()
    def predict(
        self,
        obs: np.ndarray,
        reward: np.ndarray | None = None,
        episode_start: np.ndarray | None = None,
    ) -> np.ndarray:
        """(N, act_dim) float32 actions in [-1, 1]; arguments as ``agents.base.Agent.predict``.

        The first call after ``reset`` treats every env as starting.
        """
        obs, reward, start = self._check_inputs(obs, reward, episode_start)
        if start.any():
            cont = ~start
            self.rtg[cont] -= reward[cont]
            self.timestep[cont] += 1
            self.rtg[start] = self.target_return
            self.timestep[start] = 0
            self._started[:] = True
        else:  # the common case: no boolean-mask writes
            self.rtg -= reward
            self.timestep += 1

        # Small tensors: numpy arithmetic + from_numpy is cheaper than torch ops here.
        dev = self.device
        normed = (obs - self.state_mean) / self.state_std
        if not np.isfinite(normed).all():  # e.g. 3e38 / a small std overflows float32
            raise AgentInputError(
                f"obs up to {float(np.max(np.abs(obs))):.3g} overflow float32 once normalised "
                "(obs - state_mean) / state_std: far outside the data the agent was trained on"
            )
        obs_t = torch.from_numpy(normed).to(dev)
        rtg_t = torch.from_numpy((self.rtg / self.return_scale).astype(np.float32)).to(dev)
        time_t = torch.from_numpy(self.timestep.copy()).to(dev)  # the state keeps its own t
        if self.fused:
            action = self._predict_fused(obs_t, rtg_t.unsqueeze(-1), time_t, start)
        elif self.mode == "recurrent":
            action = self._predict_recurrent(obs_t, rtg_t.unsqueeze(-1), time_t, start)
        else:
            action = self._predict_window(obs_t, rtg_t, time_t, start)
        out = action.cpu().numpy().astype(np.float32)  # a copy: the state keeps the action
        if not np.isfinite(out).all():  # the weights are checked when loaded: the inputs
            raise AgentInputError(
                f"the model's actions are NaN or Inf for obs up to "
                f"{float(np.max(np.abs(obs))):.3g} and a return-to-go up to "
                f"{float(np.max(np.abs(self.rtg))):.3g} (target return {self.target_return:g}, "
                f"return scale {self.return_scale:g}): inputs far outside the training data"
            )
        return out

    def _predict_recurrent(
        self, obs: torch.Tensor, rtg: torch.Tensor, time: torch.Tensor, start: np.ndarray
    ) -> torch.Tensor:
        if start.any():
            done = torch.as_tensor(start, device=self.device)
            self.state = self.model.backbone.reset_state(self.state, done)
        action, state = self.model.act(obs, rtg, time, self.state)
        if self._decay:  # R_t, s_t and all before age one step; a_t then counts with t + 1
            state = self.model.backbone.age_state(state, self._decay)
        self.state = self.model.observe_action(action, time, state)
        return action

    def _fused_policy(self) -> FusedAarenPolicy:
        # The fused policy copies the weights: rebuild it when they change (an optimiser
        # step or load_state_dict bumps the tensors' version counters). The parameter list
        # is cached: walking model.parameters() costs ~90 us per call at d = 128.
        version = tuple(p._version for p in self._parameters)
        if self._fused_cache is None or version != self._fused_cache_version:
            self._fused_cache = FusedAarenPolicy(self.model, self.memory_horizon)
            self._fused_cache_version = version
        return self._fused_cache

    def _predict_fused(
        self, obs: torch.Tensor, rtg: torch.Tensor, time: torch.Tensor, start: np.ndarray
    ) -> torch.Tensor:
        policy = self._fused_policy()
        if start.any():
            self.state = policy.reset_state(self.state, torch.as_tensor(start, device=self.device))
        action, self.state = policy(obs, rtg, time, self.state)
        return action

    def _predict_window(
        self, obs: torch.Tensor, rtg: torch.Tensor, time: torch.Tensor, start: np.ndarray
    ) -> torch.Tensor:
        rows, pos = self._push_window(obs, rtg, time, start)
        # Right-padded windows: positions after each env's length hold stale data that, the
        # model being causal, cannot reach the output read at pos.
        preds, _ = self.model(self._buf_rtg, self._buf_obs, self._buf_act, self._buf_t)
        action = self.model.to_action(preds[rows, pos])  # logits -> one-hot when discrete
        self._buf_act[rows, pos] = action
        return action

    def _push_window(
        self, obs: torch.Tensor, rtg: torch.Tensor, time: torch.Tensor, start: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``R_t, s_t`` to each env's window (dropping the oldest step of a full one);
        returns ``(rows, pos)``: where each env's new step sits in the buffers. The caller
        predicts there and writes the action it takes into ``_buf_act[rows, pos]``."""
        k = self.context_length
        self._len[start] = 0
        full = self._len >= k
        if full.any():  # drop the oldest step of envs whose window is full
            idx = torch.as_tensor(np.flatnonzero(full), device=self.device)
            for buf in (self._buf_rtg, self._buf_obs, self._buf_act, self._buf_t):
                buf[idx] = torch.roll(buf[idx], shifts=-1, dims=1)
            self._len[full] = k - 1
        rows = torch.arange(self.num_envs, device=self.device)
        pos = torch.tensor(self._len, device=self.device)  # a copy: _len changes below
        self._buf_rtg[rows, pos, 0] = rtg
        self._buf_obs[rows, pos] = obs
        self._buf_act[rows, pos] = 0.0  # not seen by the prediction at s_t (causal)
        self._buf_t[rows, pos] = time
        self._len += 1
        return rows, pos

    # ---- checkpoints --------------------------------------------------------------------------

    def checkpoint_metadata(self) -> dict[str, Any]:
        return {
            **self.metadata,
            "state_mean": self.state_mean.tolist(),
            "state_std": self.state_std.tolist(),
            "return_scale": self.return_scale,
            "target_return": self.target_return,
            "target_returns": self.metadata.get("target_returns", [self.target_return]),
            "context_length": self.context_length,
            "memory_horizon": self.memory_horizon,
            "env_id": self.env_id,
        }

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write a self-describing checkpoint atomically; returns its path."""
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            save_model(tmp, self.model, {**self.checkpoint_metadata(), **(extra or {})})
        return directory

    @classmethod
    def load(
        cls,
        directory: str | Path,
        mode: str = "recurrent",
        device: torch.device | str = "cpu",
        target_return: float | None = None,
        context_length: int | None = None,
        sample: bool = False,
        memory_horizon: int | None = None,
    ) -> DecisionAgent:
        """Load an agent saved by ``save`` (or by aaren-train).

        ``target_return``, ``context_length`` and ``memory_horizon`` override the checkpoint's
        values (None keeps them; a checkpoint without ``memory_horizon`` acts over the whole
        episode, as it did when it was written); they are checked before the checkpoint is read.

        Raises:
            ConfigError: a bad ``mode``, ``target_return`` or ``context_length``.
            CheckpointError: the checkpoint is missing, corrupt, or its weights are not finite.
        """
        if not isinstance(directory, (str, os.PathLike)):
            raise ConfigError(
                f"directory must be a checkpoint folder path (str or Path), got {directory!r}"
            )
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; choose one of {MODES}")
        if target_return is not None:
            check_target_return(target_return)
        if context_length is not None:
            check_context_length(context_length)
        check_acting_options(mode, None, context_length, memory_horizon)  # as aaren-eval's
        if memory_horizon is not None:
            try:
                check_memory_horizon(memory_horizon)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        model, meta = load_model(directory, device)
        check_acting_options(mode, model.config.backbone, context_length, memory_horizon)
        try:
            return cls(
                model,
                np.asarray(meta["state_mean"], dtype=np.float32),
                np.asarray(meta["state_std"], dtype=np.float32),
                return_scale=meta["return_scale"],
                target_return=meta["target_return"] if target_return is None else target_return,
                mode=mode,
                context_length=(
                    meta.get("context_length", 20) if context_length is None else context_length
                ),
                env_id=meta.get("env_id"),
                metadata={
                    k: v
                    for k, v in meta.items()
                    if k
                    not in ("state_mean", "state_std", "model_config", "format", "memory_horizon")
                },
                device=device,
                sample=sample,
                memory_horizon=(
                    meta.get("memory_horizon", 0) if memory_horizon is None else memory_horizon
                ),
            )
        except (KeyError, ValueError) as e:
            raise CheckpointError(f"{directory}: inconsistent checkpoint metadata: {e}") from e

    def __repr__(self) -> str:
        c = self.model.config
        h = self.acting_horizon
        memory = "" if h is None else f"memory_horizon={h or 'whole episode'}, "
        return (
            f"DecisionAgent(backbone={c.backbone}, mode={self.mode}, {memory}env={self.env_id}, "
            f"target_return={self.target_return}, params={self.model.num_parameters():,}, "
            f"aaren-rl {__version__})"
        )
