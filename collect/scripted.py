"""Scripted behaviour policies for the memory tasks, and the datasets they make.

An expert that reads the env's hidden (privileged) state, mixed with noisy and wrong-choice
episodes so that the return tells good episodes from bad ones (return conditioning then
matters: a model conditioned on the best return must pick the expert's choice).

Levels (``aaren-collect --env tmaze-100 --levels expert medium random``):

- ``expert``: the scripted expert on every step.
- ``medium``: **the mix**: per episode, with probability ``WRONG_FRACTION`` (0.2) a
  *wrong-choice* episode, else an expert episode; on top, every step's action is replaced by
  a uniformly random one with probability ``STEP_NOISE`` (0.1) except the decision itself.
  T-Maze: a wrong-choice episode picks the side opposite the cue at the junction (return 0
  instead of 1). RepeatFirst: it repeats a wrong suit throughout (return -1). Stateless
  CartPole: it pushes the wrong way (the pole falls within a few dozen steps).
- ``random``: uniformly random actions.

Every level is recorded with the raw env (integer action ids; RepeatFirst's observations are
integer card ids), in the same D4RL / Minari formats as the SB3 collector (envs/writers.py).

Example:
    >>> arrays = collect_arrays("tmaze-10", "medium", episodes=20, seed=0)
    >>> arrays["actions"].dtype.kind, arrays["observations"].shape[1]
    ('i', 3)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from aaren_rl.envs.datasets import OfflineDataset, split_episodes
from aaren_rl.envs.registry import get_env_spec
from aaren_rl.envs.spaces import discrete_action_count, encode_observations, one_hot
from aaren_rl.envs.tmaze import DOWN, RIGHT, UP
from aaren_rl.errors import EnvError

__all__ = [
    "SCRIPTED_LEVELS",
    "STEP_NOISE",
    "WRONG_FRACTION",
    "collect_arrays",
    "has_scripted_policy",
    "to_dataset",
    "write_scripted",
]

WRONG_FRACTION = 0.2
STEP_NOISE = 0.1
SCRIPTED_LEVELS = ("expert", "medium", "random")

# (env, rng, wrong) -> action id; env is the raw (unwrapped-spaces) env, privileged access.
Policy = Callable[[gym.Env, np.random.Generator, bool], int]


def _tmaze_policy(env: gym.Env, rng: np.random.Generator, wrong: bool) -> int:
    inner = env.unwrapped
    if inner.t < inner.length:
        return RIGHT
    return (DOWN if inner.goal == UP else UP) if wrong else inner.goal


def _repeat_first_policy(env: gym.Env, rng: np.random.Generator, wrong: bool) -> int:
    card = int(env.unwrapped.card)
    return (card + 1) % 4 if wrong else card  # wrong: one wrong suit, all episode long


def _cartpole_policy(env: gym.Env, rng: np.random.Generator, wrong: bool) -> int:
    x, x_dot, theta, theta_dot = np.asarray(env.unwrapped.state, dtype=np.float64)
    # A linear controller on the full (privileged) state: push towards the pole's fall,
    # corrected for the cart's drift. A wrong episode pushes the other way (it falls).
    push = int(theta + 0.5 * theta_dot + 0.05 * x + 0.1 * x_dot > 0)
    return 1 - push if wrong else push


def _policy_for(gym_id: str) -> tuple[Policy, bool]:
    """(policy, noise on the decision step too) for a memory task's Gymnasium id."""
    if "PassiveTMaze" in gym_id:
        return _tmaze_policy, False
    if "RepeatFirst" in gym_id:
        return _repeat_first_policy, True
    if "StatelessCartPole" in gym_id:
        return _cartpole_policy, True
    raise EnvError(
        f"no scripted behaviour policy for {gym_id}; scripted tasks: tmaze-L, "
        "popgym-RepeatFirst{Easy,Medium,Hard}, popgym-StatelessCartPole{Easy,Medium,Hard}"
    )


def has_scripted_policy(env: str) -> bool:
    """True for the memory tasks (which aaren-collect rolls out with these policies)."""
    try:
        _policy_for(get_env_spec(env).gym_id)
    except EnvError:
        return False
    return True


def _is_decision(env: gym.Env) -> bool:
    inner = env.unwrapped
    return getattr(inner, "t", -1) == getattr(inner, "length", -2)


def collect_arrays(
    env: str,
    level: str,
    episodes: int,
    seed: int = 0,
    wrong_fraction: float = WRONG_FRACTION,
    step_noise: float = STEP_NOISE,
) -> dict[str, np.ndarray]:
    """Roll the level's behaviour out for ``episodes`` episodes; D4RL arrays (raw ids).

    Returns:
        ``observations`` (N, ...) raw, ``next_observations``, ``actions`` (N,) int64,
        ``rewards`` (N,), ``terminals``, ``timeouts`` (N,) bool.
    """
    if level not in SCRIPTED_LEVELS:
        raise EnvError(f"scripted level must be one of {SCRIPTED_LEVELS}, got {level!r}")
    spec = get_env_spec(env)
    policy, noisy_decision = _policy_for(spec.gym_id)
    e = gym.make(spec.gym_id)
    n_act = discrete_action_count(e.action_space)
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in ("o", "o2", "a", "r", "term", "tout")}
    try:
        for i in range(episodes):
            obs, _ = e.reset(seed=seed * 1_000_003 + i)
            wrong = level == "medium" and rng.random() < wrong_fraction
            done = False
            while not done:
                decision = _is_decision(e)
                if level == "random":
                    a = int(rng.integers(0, n_act))
                else:
                    a = policy(e, rng, wrong)
                    noisy = level == "medium" and (noisy_decision or not decision)
                    if noisy and rng.random() < step_noise:
                        a = int(rng.integers(0, n_act))
                nxt, r, term, trunc, _ = e.step(a)
                done = bool(term or trunc)
                for k, v in zip(cols, (obs, nxt, a, r, bool(term), bool(trunc) and not term)):
                    cols[k].append(v)
                obs = nxt
    finally:
        e.close()
    return {
        "observations": np.asarray(cols["o"]),
        "next_observations": np.asarray(cols["o2"]),
        "actions": np.asarray(cols["a"], dtype=np.int64),
        "rewards": np.asarray(cols["r"], dtype=np.float32),
        "terminals": np.asarray(cols["term"], dtype=bool),
        "timeouts": np.asarray(cols["tout"], dtype=bool),
    }


def to_dataset(arrays: dict[str, np.ndarray], env: str, spec: str) -> OfflineDataset:
    """In-memory :class:`OfflineDataset` of scripted arrays (one-hot as a loaded file is)."""
    gym_id = get_env_spec(env).gym_id
    e = gym.make(gym_id)
    try:
        obs = encode_observations(arrays["observations"], e.observation_space)
        n = discrete_action_count(e.action_space)
    finally:
        e.close()
    acts = arrays["actions"]
    act = one_hot(acts, n) if n is not None else np.asarray(acts, np.float32)
    ds = split_episodes(
        obs, act, arrays["rewards"], arrays["terminals"], arrays["timeouts"],
        spec=spec, env_id=gym_id,
    )  # fmt: skip
    ds.num_actions = n
    return ds


def _attrs(gym_id: str, level: str, arrays: dict[str, np.ndarray], seed: int) -> dict[str, Any]:
    e = gym.make(gym_id)
    try:
        n = discrete_action_count(e.action_space)
        space = e.observation_space
        nvec = getattr(space, "nvec", None)
        nvec = [int(space.n)] if isinstance(space, gym.spaces.Discrete) else nvec
    finally:
        e.close()
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    returns = np.add.reduceat(arrays["rewards"], np.concatenate([[0], ends[:-1] + 1]))
    meta: dict[str, Any] = {
        "env_id": gym_id,
        "level": level,
        "policy": "scripted",
        "recipe": (
            f"scripted expert (privileged state); medium = {WRONG_FRACTION:.0%} wrong-choice "
            f"episodes + {STEP_NOISE:.0%} random steps (collect/scripted.py)"
        ),
        "seed": seed,
        "episodes": int(len(ends)),
        "transitions": int(len(arrays["rewards"])),
        "episode_return_mean": float(returns.mean()),
        "episode_return_std": float(returns.std()),
    }
    if n is not None:
        meta["num_actions"] = n
    if nvec is not None:
        meta["observation_nvec"] = [int(v) for v in np.asarray(nvec).reshape(-1)]
    return meta


def write_scripted(args: Any) -> dict[str, dict]:
    """aaren-collect for a memory task: the scripted levels of ``args.levels`` (others are
    skipped with a note), ``args.transitions`` steps each, written like the SB3 collector."""
    from pathlib import Path

    from aaren_rl.envs.writers import write_d4rl_hdf5, write_minari

    spec = get_env_spec(args.env)
    short = spec.name.split("/")[-1].removesuffix("-v0")
    levels = [lv for lv in args.levels if lv in SCRIPTED_LEVELS]
    from aaren_rl.collect.collect import check_outputs

    check_outputs(args, short, [])  # nothing existing is replaced without --overwrite
    skipped = [lv for lv in args.levels if lv not in SCRIPTED_LEVELS]
    if skipped:
        print(f"[aaren-collect] scripted task {spec.gym_id}: levels {skipped} skipped "
              f"(scripted levels: {', '.join(SCRIPTED_LEVELS)})")  # fmt: skip
    results = {}
    episodes = max(1, args.transitions // max(spec.max_episode_steps, 1))
    for level in levels:
        arrays = collect_arrays(spec.gym_id, level, episodes, seed=args.seed)
        meta = _attrs(spec.gym_id, level, arrays, args.seed)
        results[level] = meta
        if args.minari:
            target = f"{args.namespace}/{short}-{level}-v{args.version}"
            write_minari(target, arrays, spec.gym_id, algorithm_name="scripted",
                         description=f"{spec.gym_id} {level}: {meta['recipe']}",
                         extra_metadata=meta, overwrite=args.overwrite)  # fmt: skip
            print(f"[aaren-collect] wrote minari {target}")
        if args.hdf5_dir is not None:
            path = Path(args.hdf5_dir) / f"{short}-{level}.hdf5"
            write_d4rl_hdf5(path, arrays, meta)
            print(f"[aaren-collect] wrote hdf5 {path}")
        print(f"  {level:8s} {meta['transitions']:8d} transitions {meta['episodes']:6d} episodes  "
              f"return {meta['episode_return_mean']:.3f} ± {meta['episode_return_std']:.3f}")  # fmt: skip
    return results
