"""Checks of the SB3-style step inputs, shared by every agent (numpy only: no torch).

``DecisionAgent`` (PyTorch) and ``aaren_rl.agents.onnx_agent.OnnxAgent`` (onnxruntime, which must not
import torch) both take ``predict(obs, reward, episode_start)`` and validate it the same way.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["StepInputs"]


class StepInputs:
    """Mixin: ``_check_inputs`` for agents with ``num_envs``, ``obs_dim``, ``_started`` and
    ``reset(num_envs)``. ``input_error`` is the exception class raised on bad input."""

    input_error: type[ValueError] = ValueError
    num_envs: int
    obs_dim: int
    _started: np.ndarray

    def _policy_name(self) -> str:
        env = getattr(self, "env_id", None)
        return f" for this policy ({env})" if env else ""

    def _check_finite(self, obs: np.ndarray) -> None:
        """Refuse observations with NaN or Inf (they would poison a recurrent state).

        A small float32 array is checked in Python: the sum of its values as Python floats
        is finite exactly when every value is (at most 256 values below 3.5e38 cannot
        overflow a double). Interleaved with onnxruntime steps a numpy ufunc call costs
        ~10 µs more than that here, against ~1 µs when timed alone (docs/benchmarks.md,
        "Acting against the GEMV limit")."""
        if obs.dtype == np.float32 and obs.size <= 256:
            finite = math.isfinite(sum(obs.ravel().tolist()))
        else:
            finite = bool(np.isfinite(obs).all())
        if not finite:
            raise self.input_error("obs contains NaN or Inf")

    def _numbers(self, value: object, name: str, dtype: type = np.float32) -> np.ndarray:
        """``value`` as a real-valued array of ``dtype``; strings, objects, complex numbers
        and values beyond ``dtype``'s range are refused, naming ``name``."""
        try:
            raw = np.asarray(value)
        except (TypeError, ValueError) as e:  # ragged lists
            raise self.input_error(f"{name} is not an array of numbers ({e})") from None
        real = (int, float, np.integer, np.floating)  # an object array of numbers is fine
        if raw.dtype.kind == "O" and all(isinstance(x, real) for x in raw.flat):
            raw = raw.astype(np.float64)
        if raw.dtype.kind not in "biuf":
            raise self.input_error(
                f"{name} must hold real numbers, got dtype {raw.dtype} ({raw.dtype.kind!r})"
            )
        with np.errstate(over="ignore"):
            out = raw.astype(dtype)
        if np.isfinite(raw).all() and not np.isfinite(out).all():
            raise self.input_error(f"{name} holds values beyond the range of {np.dtype(dtype)}")
        return out

    def _check_inputs(
        self, obs: np.ndarray, reward: np.ndarray | None, episode_start: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validated ``(obs (N, obs_dim) float32, reward (N,) float64, start (N,) bool)``.

        The first call after ``reset`` treats every env as starting; a first call without
        ``reset`` resets for as many envs as ``obs`` has rows.
        """
        obs = self._numbers(obs, "obs")
        if obs.ndim == 1:
            obs = obs[None]
        if self.num_envs == 0:
            self.reset(obs.shape[0])  # type: ignore[attr-defined]
        n = self.num_envs
        if obs.shape != (n, self.obs_dim):
            raise self.input_error(
                f"obs has shape {obs.shape}, expected ({n}, {self.obs_dim}){self._policy_name()}; "
                "call reset(num_envs) when the number of environments changes"
            )
        self._check_finite(obs)
        reward = np.zeros(n) if reward is None else self._numbers(reward, "reward", np.float64)
        reward = reward.reshape(-1)
        start = ~self._started
        if episode_start is not None:
            start = start | np.asarray(episode_start, dtype=bool).reshape(-1)
        if reward.shape != (n,) or start.shape != (n,):
            raise self.input_error(f"reward and episode_start must have shape ({n},)")
        if not np.isfinite(reward).all():
            raise self.input_error(
                "reward contains NaN or Inf: the return-to-go would stop being a number"
            )
        return obs, reward, start
