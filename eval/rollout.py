"""Roll out an agent for N episodes and report returns, lengths and normalised scores.

The one episode loop of the toolkit (docs/style.md, "What that means for us" 7): the training
loop, ``aaren-eval``, ``aaren-collect`` (its SB3 checkpoints, through an adapter) and the
benchmarks all call :func:`evaluate` (or :func:`run_episodes`). Agents follow the one
``predict`` contract, :class:`aaren_rl.agents.base.Agent` (re-exported here as ``Agent``).

Seeding. Episode ``i`` (0-based) always starts from ``env.reset(seed=seed + i)``, whichever
environment slot runs it, so evaluating over 1 or over 4 environments gives the same
per-episode results for an agent whose action in one slot depends only on that slot's
history (true for :class:`aaren_rl.agents.DecisionAgent`). Gymnasium's vector envs cannot do this:
with autoreset the seed of an automatic reset cannot be chosen. So ``num_envs`` plain
environments are stepped here in lockstep and batched through the agent.

Splitting. Episodes are split evenly over the slots (as SB3's ``evaluate_policy`` does, to
avoid biasing towards short episodes): slot ``j`` runs a contiguous block of episode
indices. A slot that has finished its share is no longer stepped nor counted; it keeps
receiving its last observation with ``episode_start=True`` so the agent holds no growing
history for it.

Example:
    >>> from aaren_rl.eval.rollout import RandomAgent, evaluate
    >>> result = evaluate(RandomAgent(seed=0), "hopper", episodes=2, max_episode_steps=10)
    >>> result.lengths
    [10, 10]
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from aaren_rl.agents.base import MAX_NUM_ENVS, MAX_SCALED_TARGET, Agent
from aaren_rl.envs import get_env_spec, make_env, normalized_score
from aaren_rl.errors import EvalError

__all__ = ["Agent", "EvalError", "EvalResult", "RandomAgent", "evaluate", "run_episodes"]


class RandomAgent:
    """Uniform random actions in [low, high]; reseeded per episode, so results are layout-free.

    Args:
        low: lower action bound (broadcast to ``act_dim``); set from the env if None.
        high: upper action bound.
        act_dim: action size; set from the env on the first call if None.
        seed: mixed with each episode's seed.
    """

    mode = "random"

    def __init__(
        self,
        low: float | np.ndarray = -1.0,
        high: float | np.ndarray = 1.0,
        act_dim: int | None = None,
        seed: int = 0,
    ) -> None:
        self.low, self.high, self.act_dim, self.seed = low, high, act_dim, seed
        self._rngs: list[np.random.Generator] = []

    @classmethod
    def for_env(cls, env: str, seed: int = 0) -> RandomAgent:
        """A random agent with the action bounds of ``env``."""
        e = make_env(env)
        space = e.action_space
        e.close()
        return cls(space.low, space.high, int(np.prod(space.shape)), seed)

    def reset(self, num_envs: int = 1) -> None:
        self._rngs = [np.random.default_rng([self.seed, j]) for j in range(num_envs)]

    def begin_episode(self, slot: int, seed: int) -> None:
        self._rngs[slot] = np.random.default_rng([self.seed, seed])

    def predict(
        self,
        obs: np.ndarray,
        reward: np.ndarray | None = None,
        episode_start: np.ndarray | None = None,
    ) -> np.ndarray:
        dim = self.act_dim if self.act_dim is not None else np.size(self.low)
        return np.stack([rng.uniform(self.low, self.high, size=dim) for rng in self._rngs])


@dataclass
class EvalResult:
    """Outcome of :func:`evaluate`; every list is per episode, in episode order.

    ``normalized*`` are None when the env has no reference scores (never invented). Standard
    deviations are population ones (``ddof=0``), as SB3's ``evaluate_policy``.
    """

    env: str
    episodes: int
    num_envs: int
    returns: list[float]
    lengths: list[int]
    terminated: list[bool]
    """The episode ended in a terminal state (the agent fell)."""
    truncated: list[bool]
    """The episode hit the time limit (the env's, or ``max_episode_steps``)."""
    seeds: list[int]
    """``env.reset(seed=...)`` of each episode: ``seed + i``."""
    return_mean: float
    return_std: float
    normalized: list[float] | None
    normalized_mean: float | None
    normalized_std: float | None
    mode: str
    target_return: float | None
    seconds: float
    """Wall time of the whole evaluation."""
    steps: int
    """Environment steps taken over all episodes."""
    act_us_per_call: float
    """Mean wall time of one batched ``agent.predict`` call, microseconds."""
    success: list[bool] | None = None
    """Per episode, where the env defines success (``info["success"]`` on the last step,
    e.g. the T-Maze and POPGym tasks); None when it does not."""
    success_rate: float | None = None
    """Fraction of successful episodes (None when the env defines no success)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _split(episodes: int, num_envs: int) -> list[list[int]]:
    """Contiguous blocks of episode indices, sizes differing by at most one."""
    sizes = [(episodes + j) // num_envs for j in range(num_envs)][::-1]
    blocks, start = [], 0
    for size in sizes:
        blocks.append(list(range(start, start + size)))
        start += size
    return blocks


@dataclass
class EpisodeStats:
    """Raw per-episode arrays from :func:`run_episodes`."""

    returns: np.ndarray
    lengths: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    act_seconds: float
    act_calls: int
    success: np.ndarray | None = None
    """(episodes,) bool from ``info["success"]`` on each last step; None if never given."""
    act_cpu_seconds: float = 0.0
    """The calling thread's CPU time inside ``agent.predict`` (``time.thread_time``): unlike
    ``act_seconds`` it does not grow while other processes hold the core."""


def run_episodes(
    agent: Agent,
    envs: list[gym.Env],
    episodes: int,
    seed: int = 0,
    max_episode_steps: int | None = None,
    progress: bool = False,
) -> EpisodeStats:
    """Run ``episodes`` episodes over the given environments in lockstep (the core loop).

    Args:
        agent: see :class:`Agent`.
        envs: plain (non-vector) environments, one per slot; not closed here.
        episodes: how many episodes in all.
        seed: episode ``i`` is reset with ``seed + i``.
        max_episode_steps: truncate episodes after this many steps (the env's own time limit
            still applies if shorter).
        progress: a tqdm bar over finished episodes.
    """
    n = len(envs)
    blocks = _split(episodes, n)
    queue = [list(b) for b in blocks]
    current = np.full(n, -1)
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=np.int64)
    terminated = np.zeros(episodes, dtype=bool)
    truncated = np.zeros(episodes, dtype=bool)
    success = np.full(episodes, -1, dtype=np.int8)  # -1: the env said nothing
    space = envs[0].action_space
    obs_dim = envs[0].observation_space.shape
    obs = np.zeros((n, *obs_dim), dtype=np.float64)
    reward = np.zeros(n)
    start = np.ones(n, dtype=bool)
    active = np.zeros(n, dtype=bool)

    def begin(j: int) -> None:
        i = queue[j].pop(0)
        current[j] = i
        obs[j], _ = envs[j].reset(seed=seed + i)
        reward[j], start[j], active[j] = 0.0, True, True
        if hasattr(agent, "begin_episode"):
            agent.begin_episode(j, seed + i)

    agent.reset(n)
    for j in range(n):
        if queue[j]:
            begin(j)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=episodes, desc="eval", unit="ep")
    act_seconds, act_cpu_seconds, act_calls = 0.0, 0.0, 0
    while active.any():
        t0, c0 = time.perf_counter(), time.thread_time()
        actions = np.asarray(agent.predict(obs, reward, start.copy()))
        act_seconds += time.perf_counter() - t0
        act_cpu_seconds += time.thread_time() - c0
        act_calls += 1
        if actions.shape != (n, *space.shape):
            raise EvalError(
                f"the agent returned actions of shape {actions.shape}, expected "
                f"({n}, {', '.join(map(str, space.shape))}) for {n} environments"
            )
        if not np.isfinite(actions).all():
            raise _non_finite_actions(agent)
        actions = np.clip(actions, space.low, space.high)
        for j in np.flatnonzero(active):
            i = current[j]
            o, r, term, trunc, info = envs[j].step(actions[j])
            returns[i] += float(r)
            lengths[i] += 1
            trunc = bool(trunc) or (
                max_episode_steps is not None and lengths[i] >= max_episode_steps
            )
            if term or trunc:
                terminated[i], truncated[i] = bool(term), bool(trunc) and not term
                if "success" in info:
                    success[i] = bool(info["success"])
                if bar is not None:
                    bar.update(1)
                if queue[j]:
                    begin(j)
                else:  # this slot is done: no more steps; keep its agent history empty
                    active[j], start[j], reward[j] = False, True, 0.0
            else:
                obs[j], reward[j], start[j] = o, float(r), False
        start[~active] = True
    if bar is not None:
        bar.close()
    known = None if (success < 0).all() else success > 0
    return EpisodeStats(
        returns, lengths, terminated, truncated, act_seconds, act_calls, known, act_cpu_seconds
    )


MAX_EPISODES = 10**7


def _whole(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_evaluate_args(
    agent: object, episodes: object, num_envs: object, seed: object, max_steps: object
) -> None:
    """``evaluate``'s arguments, each named when it is wrong (before any env is made)."""
    if not all(callable(getattr(agent, m, None)) for m in ("reset", "predict")):
        raise EvalError(
            f"agent must have reset(num_envs) and predict(obs, reward, episode_start) "
            f"(aaren_rl.agents.base.Agent), got {type(agent).__name__}"
        )
    ranges = {"episodes": (episodes, 1, MAX_EPISODES), "num_envs": (num_envs, 1, MAX_NUM_ENVS),
              "seed": (seed, 0, 2**32 - 1)}  # fmt: skip
    if max_steps is not None:
        ranges["max_episode_steps"] = (max_steps, 1, 10**9)
    for name, (value, low, high) in ranges.items():
        if not _whole(value):
            raise EvalError(f"{name} must be a whole number, got {value!r}")
        if not low <= value <= high:  # type: ignore[operator]
            raise EvalError(f"{name} must be >= {low} and <= {high}, got {value!r}")
    if seed + episodes > 2**32:  # type: ignore[operator]
        raise EvalError(f"seed {seed}: episode seeds (seed + i) must stay below 2**32")


def _non_finite_actions(agent: Agent) -> EvalError:
    """The error for NaN/Inf actions, naming the likely culprit: a target return far outside
    what the model saw, non-finite normalisation statistics, or else the weights."""
    target, scale = getattr(agent, "target_return", None), getattr(agent, "return_scale", 1.0)
    if target is not None and abs(float(target) / float(scale)) > MAX_SCALED_TARGET:
        return EvalError(
            f"the agent returned NaN or Inf actions: the target return {target:g} is "
            f"{float(target) / float(scale):.3g} after the return scale {scale:g}, far beyond "
            "any return-to-go the model was trained on; pass a --target-return near the "
            "dataset's returns"
        )
    return EvalError(
        "the agent returned NaN or Inf actions: its weights or inputs are not finite "
        "(a diverged training run?); evaluate an earlier checkpoint"
    )


def evaluate(
    agent: Agent,
    env: str,
    episodes: int,
    num_envs: int = 1,
    seed: int = 0,
    target_return: float | None = None,
    max_episode_steps: int | None = None,
    progress: bool = False,
) -> EvalResult:
    """Evaluate ``agent`` on ``episodes`` episodes of ``env``.

    Args:
        agent: anything with ``reset(num_envs)`` and ``predict(obs, reward, episode_start)``
            (see :class:`Agent`).
        env: short name (``"hopper"``) or Gymnasium id.
        episodes: number of episodes (>= 1).
        num_envs: environments stepped in lockstep; capped at ``episodes``.
        seed: episode ``i`` is reset with ``seed + i``.
        target_return: the return-to-go to condition on (agents with a ``target_return``
            attribute); the agent's own value is restored afterwards. None keeps it.
        max_episode_steps: truncate episodes earlier than the env's time limit.
        progress: show a tqdm bar.

    Returns:
        An :class:`EvalResult`.

    Raises:
        EvalError: ``episodes`` or ``num_envs`` < 1, a target return for an agent without one,
            or observations that do not fit the agent.
        envs.EnvError: an unknown or unusable environment.
    """
    _check_evaluate_args(agent, episodes, num_envs, seed, max_episode_steps)
    if target_return is not None and not np.isfinite(target_return):
        raise EvalError(f"target return must be a finite number, got {target_return}")
    if target_return is not None and not hasattr(agent, "target_return"):
        raise EvalError(f"{type(agent).__name__} has no target_return to set")
    spec = get_env_spec(env)
    num_envs = min(num_envs, episodes)
    envs = [make_env(spec.gym_id) for _ in range(num_envs)]
    old_target = getattr(agent, "target_return", None)
    started = time.perf_counter()
    try:
        agent_obs = getattr(agent, "obs_dim", None)
        env_obs = envs[0].observation_space.shape
        if agent_obs is not None and env_obs != (agent_obs,):
            raise EvalError(
                f"{spec.gym_id} has observations of shape {env_obs}, the agent expects "
                f"({agent_obs},): it was trained for another environment"
            )
        if target_return is not None:
            agent.target_return = float(target_return)
        eps = run_episodes(agent, envs, episodes, seed, max_episode_steps, progress)
        used_target = getattr(agent, "target_return", None)
    finally:
        if target_return is not None:
            agent.target_return = old_target
        for e in envs:
            e.close()
    seconds = time.perf_counter() - started
    ref = (getattr(agent, "metadata", None) or {}).get("reference_scores")
    if (
        ref is not None
    ):  # the training dataset's own (random, expert) returns win (docs/design.md §5)
        lo, hi = map(float, ref)
        norm = 100.0 * (eps.returns - lo) / (hi - lo)
    else:
        norm = normalized_score(spec, eps.returns)
    return EvalResult(
        env=spec.gym_id,
        episodes=episodes,
        num_envs=num_envs,
        returns=eps.returns.tolist(),
        lengths=eps.lengths.tolist(),
        terminated=eps.terminated.tolist(),
        truncated=eps.truncated.tolist(),
        seeds=[seed + i for i in range(episodes)],
        return_mean=float(eps.returns.mean()),
        return_std=float(eps.returns.std()),
        normalized=None if norm is None else norm.tolist(),
        normalized_mean=None if norm is None else float(norm.mean()),
        normalized_std=None if norm is None else float(norm.std()),
        mode=str(getattr(agent, "mode", type(agent).__name__)),
        target_return=None if used_target is None else float(used_target),
        seconds=seconds,
        steps=int(eps.lengths.sum()),
        act_us_per_call=1e6 * eps.act_seconds / max(eps.act_calls, 1),
        success=None if eps.success is None else eps.success.tolist(),
        success_rate=None if eps.success is None else float(eps.success.mean()),
    )
