"""POPGym memory tasks (Morad et al. 2023, the ``popgym`` package) as Gymnasium ids.

``popgym`` 1.0.7 is pure numpy + gymnasium and runs on gymnasium 1.x. Its envs are plain
``gym.Env`` classes without ids; this adapter registers the ones aaren-rl uses, adds
``info["success"]`` on an episode's last step. Scripted experts read the hidden state from
``env.unwrapped`` (RepeatFirst's ``card``, CartPole's ``state``).

- ``RepeatFirst{Easy,Medium,Hard}``: a card's suit is shown at ``t = 0``, then one random card
  per step; the agent must output the *first* suit at every step (``Discrete(4)``
  observations and actions; 51 / 415 / 831 steps; return in [-1, 1]). Success: every answer
  right (return 1).
- ``StatelessCartPole{Easy,Medium,Hard}`` (POPGym's ``PositionOnlyCartPole``): CartPole with
  the cart and pole velocities removed from the observation; 200 / 400 / 600 steps; return
  1 for a full episode. Success: the pole stays up for the whole episode.

Ids: ``aaren/popgym-RepeatFirstEasy-v0`` etc.; short names ``popgym-RepeatFirstEasy``
(case-insensitive). Install with ``pip install 'aaren-rl[memory]'``.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym
import numpy as np

from aaren_rl.errors import EnvError

__all__ = ["POPGYM_TASKS", "PopGymAdapter", "make_popgym", "resolve_popgym_id"]

# task name -> (popgym module, class, episode length)
POPGYM_TASKS: dict[str, tuple[str, str, int]] = {
    "RepeatFirstEasy": ("popgym.envs.repeat_first", "RepeatFirstEasy", 51),
    "RepeatFirstMedium": ("popgym.envs.repeat_first", "RepeatFirstMedium", 415),
    "RepeatFirstHard": ("popgym.envs.repeat_first", "RepeatFirstHard", 831),
    "StatelessCartPoleEasy": (
        "popgym.envs.position_only_cartpole",
        "PositionOnlyCartPoleEasy",
        200,
    ),
    "StatelessCartPoleMedium": (
        "popgym.envs.position_only_cartpole",
        "PositionOnlyCartPoleMedium",
        400,
    ),
    "StatelessCartPoleHard": (
        "popgym.envs.position_only_cartpole",
        "PositionOnlyCartPoleHard",
        600,
    ),
}
_BY_LOWER = {name.lower(): name for name in POPGYM_TASKS}


class PopGymAdapter(gym.Wrapper):
    """Adds ``info["success"]`` at the end of an episode (see the module docstring)."""

    def __init__(self, env: gym.Env, task: str) -> None:
        super().__init__(env)
        self.task = task
        self._return = 0.0

    def reset(self, **kwargs: Any):
        self._return = 0.0
        return self.env.reset(**kwargs)

    def step(self, action: Any):
        a = int(np.asarray(action).reshape(-1)[0]) if np.ndim(action) else int(action)
        obs, reward, terminated, truncated, info = self.env.step(a)
        self._return += float(reward)
        if terminated or truncated:
            info = dict(info)
            if self.task.startswith("RepeatFirst"):
                info["success"] = bool(self._return > 1.0 - 1e-6)
            else:
                info["success"] = bool(truncated and not terminated)
        return obs, reward, terminated, truncated, info


def make_popgym(task: str, render_mode: str | None = None) -> gym.Env:
    """Build one POPGym task (the entry point of the registered ids; no rendering)."""
    module, cls, _ = POPGYM_TASKS[task]
    try:
        env_cls = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise EnvError(
            f"POPGym task {task} needs the popgym package: pip install 'aaren-rl[memory]' "
            f"(or pip install popgym) ({exc})"
        ) from exc
    return PopGymAdapter(env_cls(), task)


def _register(task: str) -> str:
    env_id = f"aaren/popgym-{task}-v0"
    if env_id not in gym.registry:
        gym.register(
            env_id,
            entry_point="aaren_rl.envs.popgym_envs:make_popgym",
            kwargs={"task": task},
            max_episode_steps=POPGYM_TASKS[task][2],
            reward_threshold=1.0,
        )
    return env_id


def resolve_popgym_id(name: str) -> str | None:
    """The Gymnasium id for a POPGym task name (``popgym-RepeatFirstEasy`` or the id itself),
    registering it; None if ``name`` names no POPGym task."""
    key = name.strip()
    low = key.lower()
    if low.startswith("aaren/popgym-") and low.endswith("-v0"):
        low = low[len("aaren/popgym-") : -len("-v0")]
    elif low.startswith("popgym-"):
        low = low[len("popgym-") :]
    else:
        return None
    task = _BY_LOWER.get(low)
    return None if task is None else _register(task)
