"""Choose an Aaren agent's memory horizon on validation episodes.

Acting recurrently with a memory horizon H (``DecisionAgent(memory_horizon=H)``), every
earlier token's score drops by 1/H per step; 0 attends to the whole episode exactly. Which H
acts best depends on the data: on hopper-medium H = 20 beat the whole episode by 22 points,
on hopper-medium-replay the whole episode won (docs/research/horizon.md, "The fix: a memory horizon at
acting time"). So the horizon is chosen per checkpoint, by return, on *validation* episodes:
env seeds ``VALIDATION_SEED + 100 * train_seed + i``, far from the seeds every evaluation of
this toolkit uses (``aaren-train``: seed + i; the results grids: 1000 + 100 * seed + i), so the
score reported afterwards is not the one the choice was made on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aaren_rl.errors import ConfigError

__all__ = [
    "HORIZON_CANDIDATES",
    "VALIDATION_SEED",
    "HorizonChoice",
    "check_horizon_candidates",
    "choose_memory_horizon",
]

HORIZON_CANDIDATES = (0, 10, 20, 40)
"""Default candidates: the whole episode, and soft windows of 10, 20 (= DT's K) and 40 steps."""
VALIDATION_SEED = 1_000_000


def check_horizon_candidates(
    candidates: tuple[int, ...], flag: str = "--horizon-candidates"
) -> None:
    """Raise :class:`ConfigError` naming ``flag`` unless ``candidates`` holds one or more
    horizons >= 0 (every command that takes a list of horizons checks it here)."""
    if not candidates or min(candidates) < 0:
        raise ConfigError(
            f"{flag} must be one or more timesteps >= 0 (0: the whole episode), got {candidates}"
        )


@dataclass
class HorizonChoice:
    """The chosen horizon and what every candidate scored on the validation episodes."""

    memory_horizon: int
    scores: dict[int, float]
    """Candidate -> mean normalised score (mean return where the env has no reference)."""
    episodes: int
    seed: int
    """Env seed of validation episode 0."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "selection": "online",  # chosen by playing episodes in the environment
            "memory_horizon": self.memory_horizon,
            "validation_scores": {str(h): s for h, s in self.scores.items()},
            "validation_episodes": self.episodes,
            "validation_seed": self.seed,
        }


def choose_memory_horizon(
    make_agent: Callable[[int], Any],
    env: str,
    train_seed: int,
    candidates: tuple[int, ...] = HORIZON_CANDIDATES,
    episodes: int = 10,
    num_envs: int = 10,
    max_episode_steps: int | None = None,
) -> HorizonChoice:
    """Score ``make_agent(H)`` for each candidate H on the same validation episodes; keep the
    best (ties: the earlier candidate).

    Args:
        make_agent: H -> an agent acting recurrently with memory horizon H.
        env: the environment (short name or Gymnasium id).
        train_seed: the run's seed; validation episode i is env seed
            ``VALIDATION_SEED + 100 * train_seed + i``.
        candidates: horizons to try (0: the whole episode), at least one.
        episodes, num_envs, max_episode_steps: as ``eval.rollout.evaluate``.
    """
    from aaren_rl.eval.rollout import evaluate

    check_horizon_candidates(candidates)
    seed = VALIDATION_SEED + 100 * train_seed
    scores: dict[int, float] = {}
    for h in dict.fromkeys(candidates):
        res = evaluate(
            make_agent(h),
            env,
            episodes,
            num_envs=min(num_envs, episodes),
            seed=seed,
            max_episode_steps=max_episode_steps,
        )
        score = res.normalized_mean if res.normalized_mean is not None else res.return_mean
        scores[h] = float(score)
    best = max(scores, key=lambda h: (scores[h], -list(scores).index(h)))
    return HorizonChoice(best, scores, episodes, seed)
