"""Environment registry: short names, Gymnasium ids, D4RL reference returns, env factories.

The four MuJoCo locomotion tasks of D4RL are known by short name (``hopper``, ``halfcheetah``,
``walker2d``, ``ant``) and map to their Gymnasium v5 ids. Any other Gymnasium id whose
observation and action spaces are ``Box`` works too; it gets a spec without reference scores
(so a normalised score is reported as unavailable, never invented).

Example:
    >>> from aaren_rl.envs import get_env_spec, make_env
    >>> spec = get_env_spec("hopper")
    >>> spec.gym_id, spec.target_returns[0]
    ('Hopper-v5', 3600.0)
    >>> env = make_env("hopper", seed=0)
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym

from aaren_rl.envs.popgym_envs import resolve_popgym_id
from aaren_rl.envs.spaces import discrete_action_count, is_discrete, vector_spaces
from aaren_rl.envs.tmaze import resolve_tmaze_id
from aaren_rl.errors import EnvError


@dataclass(frozen=True)
class EnvSpec:
    """What the toolkit needs to know about an environment.

    Attributes:
        name: short name (``"hopper"``) or, for unregistered envs, the Gymnasium id.
        gym_id: Gymnasium id passed to ``gym.make`` (``"Hopper-v5"``).
        random_score: D4RL reference return of a uniform-random policy, or None if unknown.
        expert_score: D4RL reference return of the expert policy, or None if unknown.
        target_returns: returns-to-go to condition a DT-style agent on; the first is the default.
        max_episode_steps: time limit of one episode (the TimeLimit of the Gymnasium spec).
    """

    name: str
    gym_id: str
    random_score: float | None
    expert_score: float | None
    target_returns: tuple[float, ...]
    max_episode_steps: int


# D4RL reference returns (d4rl/infos.py REF_MIN_SCORE / REF_MAX_SCORE; docs/design.md §5).
# Targets: DT paper (Chen et al., 2021) values; the first one is the default.
_KNOWN: dict[str, EnvSpec] = {
    "hopper": EnvSpec("hopper", "Hopper-v5", -20.272305, 3234.3, (3600.0, 1800.0), 1000),
    "halfcheetah": EnvSpec(
        "halfcheetah", "HalfCheetah-v5", -280.178953, 12135.0, (6000.0, 12000.0), 1000
    ),
    "walker2d": EnvSpec("walker2d", "Walker2d-v5", 1.629008, 4592.3, (5000.0, 2500.0), 1000),
    "ant": EnvSpec("ant", "Ant-v5", -325.6, 3879.7, (3600.0, 1800.0), 1000),
}
_BY_GYM_ID = {spec.gym_id.lower(): spec for spec in _KNOWN.values()}
# Older MuJoCo versions of the same tasks share reference scores (D4RL used v2/v3).
_BY_PREFIX = {spec.gym_id.split("-")[0].lower(): spec for spec in _KNOWN.values()}

KNOWN_ENVS: tuple[str, ...] = tuple(_KNOWN)


def get_env_spec(name_or_id: str) -> EnvSpec:
    """Look up an environment by short name or Gymnasium id.

    Args:
        name_or_id: ``"hopper"``, ``"Hopper-v5"`` or any registered Gymnasium id with Box spaces.

    Returns:
        The :class:`EnvSpec`. For an id outside the registry the scores are None,
        ``max_episode_steps`` comes from the Gymnasium spec (1000 if it has none) and the
        target return is the spec's ``reward_threshold`` if set, else ``max_episode_steps``
        (one reward unit per step). Pass an explicit target (e.g. the best return in your
        dataset) for such envs.

    Raises:
        EnvError: the name is neither a known short name nor a usable Gymnasium id.
    """
    if not isinstance(name_or_id, str) or not name_or_id:
        raise EnvError(f"Expected an env name or Gymnasium id, got {name_or_id!r}.")
    key = name_or_id.strip()
    key = resolve_tmaze_id(key) or resolve_popgym_id(key) or key  # memory tasks, registered
    if key.lower() in _KNOWN:
        return _KNOWN[key.lower()]
    if key.lower() in _BY_GYM_ID:
        return _BY_GYM_ID[key.lower()]
    try:
        gym_spec = gym.spec(key)
    except Exception as exc:  # gymnasium raises several error types (NameNotFound, ...)
        raise EnvError(
            f"Unknown environment {name_or_id!r}: not a short name ({', '.join(KNOWN_ENVS)}) "
            f"and not a registered Gymnasium id ({exc})."
        ) from exc
    known = _BY_PREFIX.get(gym_spec.name.lower())
    steps = int(gym_spec.max_episode_steps or (known.max_episode_steps if known else 1000))
    if known is not None:  # e.g. Hopper-v4: same task, same D4RL references.
        return EnvSpec(
            known.name, gym_spec.id, known.random_score, known.expert_score,
            known.target_returns, steps,
        )  # fmt: skip
    target = gym_spec.reward_threshold if gym_spec.reward_threshold is not None else steps
    return EnvSpec(gym_spec.id, gym_spec.id, None, None, (float(target),), steps)


def _check_box_spaces(env: gym.Env, gym_id: str) -> None:
    # Discrete / MultiDiscrete observations and Discrete actions are seen as vectors
    # (envs/spaces.py); anything else (Tuple, Dict, MultiBinary...) is not supported.
    obs_ok = isinstance(env.observation_space, gym.spaces.Box) or is_discrete(env.observation_space)
    act_ok = isinstance(env.action_space, gym.spaces.Box) or (
        discrete_action_count(env.action_space) is not None
    )
    for what, space, ok in (
        ("observation", env.observation_space, obs_ok),
        ("action", env.action_space, act_ok),
    ):
        if not ok:
            env.close()
            raise EnvError(
                f"{gym_id} has a {type(space).__name__} {what} space; aaren-rl needs Box, "
                "Discrete or MultiDiscrete observations and Box or Discrete actions."
            )


def make_env(name_or_id: str, seed: int | None = None, render_mode: str | None = None) -> gym.Env:
    """Create one environment (with its Gymnasium TimeLimit) and seed it.

    Args:
        name_or_id: short name or Gymnasium id, see :func:`get_env_spec`.
        seed: seeds ``reset`` once and the action space; None leaves them unseeded.
        render_mode: passed to ``gym.make`` (e.g. ``"rgb_array"``).

    Raises:
        EnvError: unknown id, a failure to construct it, or non-Box spaces.
    """
    spec = get_env_spec(name_or_id)
    try:
        env = gym.make(spec.gym_id, render_mode=render_mode)
    except Exception as exc:
        raise EnvError(f"Could not create {spec.gym_id}: {exc}") from exc
    _check_box_spaces(env, spec.gym_id)
    env = vector_spaces(env)  # discrete spaces as one-hot / argmax vectors
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env
