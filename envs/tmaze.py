"""Passive T-Maze (Ni et al. 2023, "When do Transformers shine in RL?"): memory length L.

The agent starts at the foot of a corridor of length ``L``. The goal side (up or down) is
shown in the **first observation only**; the agent then walks the corridor and, at the
junction (step ``t = L``), must choose the side it was shown. Passive: the corridor walk is
not a decision (every step advances one cell, whatever the action), so the credit-assignment
length is 1 and the memory length is ``L``: the task measures memory and nothing else.

- Observation ``Box(-1, 1, (3,))``: ``[cue, corridor, junction]`` with ``cue = +1`` (goal up)
  or ``-1`` (goal down) at ``t = 0`` and 0 afterwards; ``corridor = 1`` at ``0 < t < L``;
  ``junction = 1`` at ``t = L``.
- Actions ``Discrete(4)``: 0 right (walk on), 1 left, 2 up, 3 down. Only the action at the
  junction matters.
- Reward: 1 for the right side at the junction, 0 otherwise; the episode ends after the
  junction step (``L + 1`` steps). ``info["success"]`` is set on that last step.

A policy that forgets the cue is right half of the time (50% success: chance).

Names: ``tmaze-L`` (e.g. ``tmaze-1000``), the Gymnasium id ``aaren/PassiveTMaze-L1000-v0``,
or the base id with a keyword, ``aaren/PassiveTMaze-v0:length=1000``; see
:func:`resolve_tmaze_id`.

Example:
    >>> env = PassiveTMaze(length=3)
    >>> obs, _ = env.reset(seed=0)
    >>> obs.shape
    (3,)
"""

from __future__ import annotations

import re
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = [
    "DOWN",
    "LEFT",
    "PassiveTMaze",
    "RIGHT",
    "UP",
    "register_tmaze",
    "resolve_tmaze_id",
    "tmaze_id",
]

RIGHT, LEFT, UP, DOWN = 0, 1, 2, 3
BASE_ID = "aaren/PassiveTMaze-v0"
DEFAULT_LENGTH = 100
_ID = re.compile(r"^aaren/PassiveTMaze-L(\d+)-v0$")
_SHORT = re.compile(r"^tmaze(?:-(\d+))?$", re.IGNORECASE)
_KWARG = re.compile(r"^aaren/PassiveTMaze-v0:length=(\d+)$")


class PassiveTMaze(gym.Env):
    """Passive T-Maze of memory length ``length`` (see the module docstring).

    Args:
        length: corridor length L >= 1; the decision is at step ``t = L``.

    Attributes:
        goal: the side to choose, ``UP`` or ``DOWN`` (privileged state for scripted experts).
        t: the current step.
    """

    metadata = {"render_modes": []}

    def __init__(self, length: int = DEFAULT_LENGTH, render_mode: str | None = None) -> None:
        if int(length) < 1:
            raise ValueError(f"T-Maze length must be >= 1, got {length}")
        self.length = int(length)
        self.render_mode = render_mode  # nothing to render; accepted for gym.make
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(4)
        self.goal = UP
        self.t = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(3, dtype=np.float32)
        if self.t == 0:
            obs[0] = 1.0 if self.goal == UP else -1.0
        obs[1] = float(0 < self.t < self.length)
        obs[2] = float(self.t == self.length)
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.goal = UP if self.np_random.random() < 0.5 else DOWN
        self.t = 0
        return self._obs(), {"goal": self.goal}

    def step(self, action: Any):
        a = int(np.asarray(action).reshape(-1)[0]) if np.ndim(action) else int(action)
        if not self.action_space.contains(a):
            raise ValueError(f"T-Maze action must be in 0..3, got {action!r}")
        if self.t < self.length:  # corridor: passive, every action walks on
            self.t += 1
            return self._obs(), 0.0, False, False, {}
        success = a == self.goal
        return self._obs(), float(success), True, False, {"success": bool(success)}


def tmaze_id(length: int) -> str:
    """The Gymnasium id of the T-Maze of memory length ``length`` (registered on demand)."""
    register_tmaze(length)
    return f"aaren/PassiveTMaze-L{int(length)}-v0"


def register_tmaze(length: int | None = None) -> None:
    """Register the base id (``length`` a keyword) and, if given, the id of one length."""
    if BASE_ID not in gym.registry:
        gym.register(
            BASE_ID,
            entry_point="aaren_rl.envs.tmaze:PassiveTMaze",
            kwargs={"length": DEFAULT_LENGTH},
            max_episode_steps=None,
            reward_threshold=1.0,
        )
    if length is None:
        return
    env_id = f"aaren/PassiveTMaze-L{int(length)}-v0"
    if env_id not in gym.registry:
        gym.register(
            env_id,
            entry_point="aaren_rl.envs.tmaze:PassiveTMaze",
            kwargs={"length": int(length)},
            max_episode_steps=int(length) + 1,
            reward_threshold=1.0,
        )


def resolve_tmaze_id(name: str) -> str | None:
    """The canonical T-Maze id for ``name``, registering it; None if ``name`` is no T-Maze.

    ``tmaze`` (L = 100), ``tmaze-L``, ``aaren/PassiveTMaze-LL-v0``,
    ``aaren/PassiveTMaze-v0:length=L`` and the base id ``aaren/PassiveTMaze-v0`` (L = 100).
    """
    key = name.strip()
    for pattern in (_SHORT, _ID, _KWARG):
        m = pattern.match(key)
        if m:
            return tmaze_id(int(m.group(1)) if m.group(1) else DEFAULT_LENGTH)
    if key == BASE_ID:
        return tmaze_id(DEFAULT_LENGTH)
    return None
