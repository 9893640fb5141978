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

from aaren_rl.errors import ConfigError

__all__ = ["Agent", "check_context_length", "check_target_return"]


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
    """Refuse a window length below 1 (a window of zero steps sees nothing)."""
    if not isinstance(context_length, (int, np.integer)) or context_length < 1:
        raise ConfigError(
            f"context length must be an integer >= 1, got {context_length!r}; pass e.g. "
            "--context-length 20, or leave it out to use the checkpoint's"
        )
