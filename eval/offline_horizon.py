"""Choose an Aaren agent's memory horizon offline: from held-out dataset episodes only.

``eval/horizon.py`` chooses the horizon by *playing* validation episodes in the environment:
online model selection, which strictly offline RL cannot do. Here the choice uses only the
dataset (``aaren-train --horizon-selection offline``, the default):

1. Before training, :func:`heldout_episodes` splits off a few episodes (seeded by the run's
   seed; their indices are recorded in the checkpoint) that the sampler never draws.
2. After training, every candidate horizon H is scored on those episodes by
   :func:`offline_action_errors`: the model runs *recurrently* over each held-out episode
   with horizon H, exactly as it acts (``FusedAarenPolicy``), reading the dataset's
   observations, and its actions are compared with the dataset's (mean squared error per
   action dimension, averaged over each episode's steps, then over the scored episodes).
3. The horizon with the lowest error wins (ties: the earlier candidate).

Three replays are measured and recorded (the criterion picks the one that decides):

- ``own-actions`` (aaren-train's default): its own previous actions, the episode's own
  returns-to-go. Teacher forcing the actions would let a model that copies its last action
  look good; acting never gets the dataset's actions.
- ``target-return`` (the default until 2026-12-07): the model reads *its own* previous actions and
  the return-to-go the agent sees when acting (the target return less the rewards so far):
  acting replayed on the data's states.
- ``teacher-forced``: the dataset's previous actions and returns-to-go (the training
  objective on unseen data).

Only the held-out episodes with the higher returns are scored (``TOP_SHARE``, at least one):
the agent is asked for a high target return, so the behaviour to reproduce is that of the
better episodes; a low-return episode's actions are what the return conditioning should
steer away from. docs/research/horizon.md, "Offline horizon selection", has the rationale and what
was measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from aaren_rl.errors import ConfigError

__all__ = [
    "HOLDOUT_FRACTION",
    "HOLDOUT_MIN_EPISODES",
    "OFFLINE_CRITERIA",
    "TOP_SHARE",
    "OfflineHorizonChoice",
    "choose_memory_horizon_offline",
    "heldout_episodes",
    "lowest_error_horizon",
    "offline_action_errors",
    "offline_step_errors",
    "top_return_episodes",
]

HOLDOUT_FRACTION = 0.05
"""Default share of the dataset's episodes held out for the offline choice."""
HOLDOUT_MIN_EPISODES = 5
"""At least this many held-out episodes (where the dataset has five times as many)."""
HOLDOUT_MAX_SHARE = 0.2
"""Never hold out more than a fifth of the episodes, whatever the fraction and minimum say."""
TOP_SHARE = 0.5
"""The share of held-out episodes scored: those with the highest returns (at least one)."""
OFFLINE_CRITERIA = ("own-actions", "teacher-forced", "target-return")
_SPLIT_STREAM = 29_000_000  # keeps the split's generator apart from every other seeded stream


def heldout_episodes(num_episodes: int, seed: int, fraction: float = HOLDOUT_FRACTION) -> list[int]:
    """Indices (sorted) of the episodes held out of training for the offline horizon choice.

    ``max(ceil(fraction * N), HOLDOUT_MIN_EPISODES)`` episodes, capped at a fifth of the N
    episodes, drawn without replacement by a generator seeded with ``seed``: the same
    dataset and seed always give the same split (a resumed run holds out the same ones).

    Raises:
        ConfigError: fewer than 5 episodes (a fifth of them is none), or a fraction outside
            (0, 1).
    """
    if not (math.isfinite(fraction) and 0 < fraction < 1):
        raise ConfigError(f"--holdout-fraction must be in (0, 1), got {fraction}")
    n = min(
        max(math.ceil(fraction * num_episodes), HOLDOUT_MIN_EPISODES),
        int(HOLDOUT_MAX_SHARE * num_episodes),
    )
    if n < 1:
        raise ConfigError(
            f"the dataset has {num_episodes} episode(s): too few to hold any out for the offline "
            "memory-horizon choice (a fifth of them, at least one). Pass --memory-horizon H "
            "(0: the whole episode) or --horizon-selection online"
        )
    rng = np.random.default_rng([_SPLIT_STREAM, seed])
    return sorted(int(i) for i in rng.choice(num_episodes, size=n, replace=False))


def _padded(trajectories: list[Any], state_mean: np.ndarray, state_std: np.ndarray,
            return_scale: float, device: torch.device, dtype: torch.dtype,
            target_return: float | None = None) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """(obs, rtg, actions, valid) of the episodes, right-padded to the longest: (B, T, ...).
    With ``target_return``, the return-to-go is the target less the rewards so far (as the
    agent computes it), not the episode's own."""
    b, t = len(trajectories), max(len(tr) for tr in trajectories)
    obs = np.zeros((b, t, trajectories[0].observations.shape[1]), np.float64)
    act = np.zeros((b, t, trajectories[0].actions.shape[1]), np.float64)
    rtg, valid = np.zeros((b, t, 1), np.float64), np.zeros((b, t), bool)
    for i, tr in enumerate(trajectories):
        n = len(tr)
        obs[i, :n] = (tr.observations - state_mean) / state_std
        own = tr.returns_to_go
        if target_return is not None:
            own = target_return - np.concatenate(
                [[0.0], np.cumsum(tr.rewards, dtype=np.float64)[:-1]]
            )
        act[i, :n], rtg[i, :n, 0], valid[i, :n] = tr.actions, own / return_scale, True
    as_t = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
    return as_t(obs), as_t(rtg), as_t(act), torch.as_tensor(valid, device=device)


def offline_action_errors(
    model: Any,
    trajectories: list[Any],
    state_mean: np.ndarray,
    state_std: np.ndarray,
    return_scale: float,
    memory_horizon: int,
    teacher_forced: bool = False,
    target_return: float | None = None,
) -> np.ndarray:
    """Per episode, the mean squared action error of the model acting recurrently with
    ``memory_horizon`` over the episode's observations and returns-to-go.

    Args:
        model: an Aaren ``DecisionModel`` with continuous actions.
        trajectories: the episodes (``envs.datasets.Trajectory``), run side by side.
        state_mean, state_std, return_scale: the agent's normalisation.
        memory_horizon: H (0: the whole episode), as ``DecisionAgent(memory_horizon=H)``.
        teacher_forced: feed the dataset's previous actions instead of the model's own.
        target_return: condition on this return, lowered by the rewards received, as the
            agent acts (None: the dataset's own returns-to-go).

    Returns:
        (len(trajectories),) float64: each episode's squared error per action dimension,
        averaged over its steps.
    """
    errors = offline_step_errors(model, trajectories, state_mean, state_std, return_scale,
                                 memory_horizon, teacher_forced, target_return)  # fmt: skip
    return np.nanmean(errors, axis=1)


@torch.no_grad()
def offline_step_errors(
    model: Any,
    trajectories: list[Any],
    state_mean: np.ndarray,
    state_std: np.ndarray,
    return_scale: float,
    memory_horizon: int,
    teacher_forced: bool = False,
    target_return: float | None = None,
) -> np.ndarray:
    """(episodes, longest episode) float64: the squared action error per action dimension at
    every step (NaN after an episode's end); arguments as :func:`offline_action_errors`."""
    from aaren_rl.aaren_policy.fused import FusedAarenPolicy

    policy = FusedAarenPolicy(model, memory_horizon)  # a copy of the weights, in eval mode
    device, dtype = policy.emb_w.device, policy.emb_w.dtype
    obs, rtg, act, valid = _padded(trajectories, state_mean, state_std, return_scale, device, dtype,
                                   target_return)  # fmt: skip
    b, t = valid.shape
    state = policy.init_state(b, device)
    err = torch.full((b, t), math.nan, dtype=torch.float64, device=device)
    for step in range(t):
        timestep = torch.full((b,), step, dtype=torch.long, device=device)
        action, state = policy(obs[:, step], rtg[:, step], timestep, state)
        sq = ((action.double() - act[:, step].double()) ** 2).mean(-1)
        err[:, step] = torch.where(valid[:, step], sq, torch.full_like(sq, math.nan))
        if teacher_forced:  # the next call reads the dataset's action as a_t
            state = state._replace(action=act[:, step])
    return err.cpu().numpy()


def top_return_episodes(dataset: Any, heldout: list[int]) -> list[int]:
    """The held-out episodes scored: the ``TOP_SHARE`` with the highest returns (at least
    one; ties: the earlier index), sorted."""
    returns = np.array([dataset.trajectories[i].episode_return for i in heldout])
    top = max(1, math.ceil(TOP_SHARE * len(heldout)))
    order = np.argsort(-returns, kind="stable")[:top]
    return sorted(heldout[i] for i in order)


@dataclass
class OfflineHorizonChoice:
    """The horizon chosen on held-out episodes, and every candidate's action errors."""

    memory_horizon: int
    errors: dict[str, dict[int, float]]
    """criterion -> candidate -> mean action error over the scored episodes (lower: better)."""
    criterion: str
    heldout: list[int]
    """Dataset indices of the held-out episodes (never trained on)."""
    scored: list[int] = field(default_factory=list)
    """The held-out episodes scored (the higher-return share, ``TOP_SHARE``)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "selection": "offline",
            "memory_horizon": self.memory_horizon,
            "criterion": self.criterion,
            "action_errors": {str(h): e for h, e in self.errors[self.criterion].items()},
            "action_errors_by_criterion": {
                c: {str(h): e for h, e in errs.items()} for c, errs in self.errors.items()
            },
            "heldout_episodes": self.heldout,
            "scored_episodes": self.scored,
        }


def lowest_error_horizon(errors: dict[int, float]) -> int:
    """The candidate with the lowest error; on a tie the earlier one in ``errors``' order
    (the order the candidates were given)."""
    return min(errors, key=errors.__getitem__)  # min keeps the first of equal keys


def choose_memory_horizon_offline(
    model: Any,
    dataset: Any,
    heldout: list[int],
    return_scale: float,
    candidates: tuple[int, ...],
    criterion: str = "own-actions",
    state_mean: np.ndarray | None = None,
    state_std: np.ndarray | None = None,
    target_return: float | None = None,
) -> OfflineHorizonChoice:
    """Score each candidate H on the higher-return held-out episodes; keep the lowest error.

    Args:
        model: the Aaren ``DecisionModel`` (continuous actions).
        dataset: the ``OfflineDataset`` the run was trained on (all its episodes).
        heldout: indices of the held-out episodes (:func:`heldout_episodes`).
        return_scale: as the agent's.
        candidates: horizons to try (0: the whole episode), at least one.
        criterion: which error decides (``OFFLINE_CRITERIA``; ``target-return`` needs
            ``target_return``).
        state_mean, state_std: the agent's normalisation (default: the dataset's).
        target_return: the return the agent is asked for; the ``target-return`` criterion
            (own actions, conditioned on it as when acting) is scored only with it.
    """
    from aaren_rl.eval.horizon import check_horizon_candidates

    check_horizon_candidates(candidates)
    if criterion not in OFFLINE_CRITERIA:
        raise ConfigError(f"offline criterion must be one of {OFFLINE_CRITERIA}, got {criterion!r}")
    if not heldout:
        raise ConfigError("no held-out episodes to choose the memory horizon on")
    scored = top_return_episodes(dataset, heldout)
    trajs = [dataset.trajectories[i] for i in scored]
    mean = dataset.state_mean if state_mean is None else state_mean
    std = dataset.state_std if state_std is None else state_std
    criteria = [c for c in OFFLINE_CRITERIA if c != "target-return" or target_return is not None]
    if criterion not in criteria:
        raise ConfigError(f"offline criterion {criterion!r} needs the target return")
    errors: dict[str, dict[int, float]] = {c: {} for c in criteria}
    was_training = model.training
    try:
        for h in dict.fromkeys(candidates):
            for c in criteria:
                target = target_return if c == "target-return" else None
                e = offline_action_errors(model, trajs, mean, std, return_scale, h,
                                          c == "teacher-forced", target)  # fmt: skip
                errors[c][h] = float(e.mean())
    finally:
        model.train(was_training)
    best = lowest_error_horizon(errors[criterion])
    return OfflineHorizonChoice(best, errors, criterion, list(heldout), scored)
