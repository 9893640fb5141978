"""Discrete spaces as vectors: one-hot encodings and the wrapper that gives every env Box spaces.

The models see vectors only. A ``Discrete(n)`` observation becomes a one-hot vector of size
``n``; a ``MultiDiscrete(nvec)`` one the concatenation of one one-hot per entry
(``sum(nvec)``). A ``Discrete(n)`` action is a vector of ``n`` scores whose argmax is the
action id: an agent that outputs a one-hot (argmax of its logits, or a sampled id) and one that
outputs raw scores act the same. So the acting loop, the agents and the ONNX path never see an
integer: :class:`VectorSpaces` does the conversion at the env boundary.

Example:
    >>> import gymnasium as gym
    >>> one_hot(np.array([2, 0]), 3)
    array([[0., 0., 1.],
           [1., 0., 0.]], dtype=float32)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

__all__ = [
    "VectorSpaces",
    "discrete_action_count",
    "encode_observations",
    "is_discrete",
    "observation_size",
    "one_hot",
    "vector_spaces",
]


def one_hot(ids: np.ndarray, n: int) -> np.ndarray:
    """(...,) integer ids in ``[0, n)`` -> (..., n) float32 one-hot."""
    ids = np.asarray(ids, dtype=np.int64)
    out = np.zeros(ids.shape + (n,), dtype=np.float32)
    np.put_along_axis(out, ids[..., None], 1.0, axis=-1)
    return out


def is_discrete(space: gym.Space) -> bool:
    return isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete))


def discrete_action_count(space: gym.Space) -> int | None:
    """``n`` for a ``Discrete(n)`` action space, None for a Box."""
    return int(space.n) if isinstance(space, gym.spaces.Discrete) else None


def observation_size(space: gym.Space) -> int:
    """Length of the vector the model sees for one observation of ``space``."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(np.sum(space.nvec))
    return int(np.prod(space.shape))


def encode_observations(obs: np.ndarray, space: gym.Space) -> np.ndarray:
    """Observations of ``space`` (N,) / (N, k) ids or (N, ...) values -> (N, obs_dim) float32.

    Ids are the raw values (``Discrete.start`` subtracted)."""
    obs = np.asarray(obs)
    if isinstance(space, gym.spaces.Discrete):
        return one_hot(obs.reshape(-1) - int(space.start), int(space.n))
    if isinstance(space, gym.spaces.MultiDiscrete):
        ids = obs.reshape(len(obs), -1) - np.asarray(space.start).reshape(1, -1)
        nvec = np.asarray(space.nvec).reshape(-1)
        return np.concatenate([one_hot(ids[:, i], int(n)) for i, n in enumerate(nvec)], axis=1)
    return obs.reshape(len(obs), -1).astype(np.float32)


class VectorSpaces(gym.Wrapper):
    """Box views of Discrete / MultiDiscrete spaces (see the module docstring).

    Observations: one-hot (float32 in [0, 1]); actions: ``Box(0, 1, (n,))`` whose argmax is
    passed to the wrapped env. Box spaces pass through unchanged.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._obs_space = env.observation_space
        if is_discrete(env.observation_space):
            size = observation_size(env.observation_space)
            self.observation_space = gym.spaces.Box(0.0, 1.0, (size,), np.float32)
        self._n_actions = discrete_action_count(env.action_space)
        if self._n_actions is not None:
            self.action_space = gym.spaces.Box(0.0, 1.0, (self._n_actions,), np.float32)

    @property
    def num_actions(self) -> int | None:
        return self._n_actions

    def _obs(self, obs: Any) -> Any:
        if not is_discrete(self._obs_space):
            return obs
        return encode_observations(np.asarray(obs)[None], self._obs_space)[0]

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        return self._obs(obs), info

    def step(self, action: Any):
        if self._n_actions is not None:
            action = int(np.argmax(np.asarray(action).reshape(-1)))
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._obs(obs), reward, terminated, truncated, info


def vector_spaces(env: gym.Env) -> gym.Env:
    """``env`` wrapped in :class:`VectorSpaces` if any of its spaces is discrete."""
    if is_discrete(env.observation_space) or discrete_action_count(env.action_space) is not None:
        return VectorSpaces(env)
    return env
