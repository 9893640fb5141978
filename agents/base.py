"""The one acting contract every agent of the toolkit follows (numpy only: no torch).

SB3-style step API over a batch of ``N`` environments::

    agent.reset(num_envs)
    action = agent.predict(obs, reward, episode_start)

``DecisionAgent`` (PyTorch), ``OnnxAgent`` (onnxruntime), the benchmark agents and the
adapters of ``aaren-collect`` all implement it, and ``aaren_rl.eval.rollout`` (the one episode
loop) drives any of them through it.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import numpy as np

from aaren_rl.errors import AarenError, ConfigError

__all__ = [
    "MAX_NUM_ENVS",
    "MAX_SCALED_TARGET",
    "Agent",
    "check_acting_options",
    "check_context_length",
    "check_num_envs",
    "check_target_return",
]

MAX_NUM_ENVS = 1 << 16  # parallel environments one agent may act in
MAX_CONTEXT_LENGTH = 1 << 16  # a window of K steps allocates (N, K, obs_dim) buffers
MAX_SCALED_TARGET = 1e6  # |target return / return_scale| beyond this: no return-to-go seen


@runtime_checkable
class Agent(Protocol):
    """An agent that acts in ``N`` environments at once.

    Optional extras, used by :func:`aaren_rl.eval.rollout.evaluate` when present:

    - ``target_return`` (float attribute): the return-to-go an episode starts from.
    - ``mode`` (str attribute): recorded in evaluation results.
    - ``obs_dim`` (int attribute): checked against the environment before acting.
    - ``begin_episode(slot: int, seed: int)``: called when slot ``slot`` starts the episode
      seeded ``seed``; lets a stochastic agent reseed itself per episode.
    """

    def reset(self, num_envs: int = 1) -> None:
        """Forget everything; prepare for ``num_envs`` parallel environments."""
        ...

    def predict(
        self,
        obs: np.ndarray,
        reward: np.ndarray | None = None,
        episode_start: np.ndarray | None = None,
    ) -> np.ndarray:
        """One action per environment.

        Args:
            obs: (N, obs_dim) current observations.
            reward: (N,) reward of the previous step (ignored where ``episode_start``).
            episode_start: (N,) bool, True where the env was just reset.

        Returns:
            (N, act_dim) float32 actions.
        """
        ...


def check_target_return(target_return: float) -> None:
    """Refuse a target return that is not a finite number (NaN would poison every action)."""
    try:
        ok = math.isfinite(float(target_return))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(
            f"target return must be a finite number, got {target_return!r}; pass e.g. "
            "--target-return 3600 (the return-to-go an episode starts from)"
        )


def check_context_length(context_length: int) -> None:
    """Refuse a window length below 1 (a window of zero steps sees nothing) or above
    :data:`MAX_CONTEXT_LENGTH` (its buffers would not fit in memory)."""
    ok = isinstance(context_length, (int, np.integer)) and not isinstance(context_length, bool)
    if not ok or not 1 <= context_length <= MAX_CONTEXT_LENGTH:
        raise ConfigError(
            f"context length must be an integer in [1, {MAX_CONTEXT_LENGTH}], got "
            f"{context_length!r}; pass e.g. --context-length 20, or leave it out to use the "
            "checkpoint's"
        )


def check_num_envs(num_envs: object, error: type[AarenError] = ConfigError) -> int:
    """``num_envs`` of ``reset``: a whole number in [1, :data:`MAX_NUM_ENVS`]; returns it."""
    whole = isinstance(num_envs, (int, np.integer)) and not isinstance(num_envs, bool)
    if not whole or not 1 <= num_envs <= MAX_NUM_ENVS:  # type: ignore[operator]
        raise error(f"num_envs must be a whole number in [1, {MAX_NUM_ENVS}], got {num_envs!r}")
    return int(num_envs)  # type: ignore[arg-type]


def check_acting_options(
    mode: str,
    backbone: str | None,
    context_length: int | None,
    memory_horizon: int | None,
    error: type[AarenError] = ConfigError,
    flags: bool = False,
) -> None:
    """The one rule for the acting overrides of ``aaren-eval`` and ``DecisionAgent.load``:
    a window length applies to ``mode="window"`` only, a memory horizon to an Aaren backbone
    acting with ``mode="recurrent"`` only. ``backbone`` None: not known yet (check again once
    the checkpoint is read). ``flags``: name them as command-line flags."""
    ctx, mem = ("--context-length", "--memory-horizon") if flags else ("context_length",
                                                                       "memory_horizon")  # fmt: skip
    window = "--mode window" if flags else "mode='window'"
    if context_length is not None and mode != "window":
        raise error(f"{ctx} is the window length of {window}; drop it")
    if memory_horizon is not None and mode != "recurrent":
        raise error(
            f"{mem} applies to a checkpoint acting with {'--mode' if flags else 'mode='} "
            f"recurrent, not {mode!r}; drop it"
        )
    if memory_horizon is not None and backbone not in (None, "aaren"):
        raise error(
            f"{mem} is for Aaren checkpoints (a {backbone} acting recurrently keeps its whole "
            "KV cache); drop it"
        )
