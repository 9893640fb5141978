"""D4RL normalised score: 100 x (return - random) / (expert - random).

Reference returns are D4RL's (d4rl/infos.py), as listed in docs/design.md §5. Environments without
reference returns get ``None``: the score is reported as unavailable, never invented.

Example:
    >>> from aaren_rl.envs.scores import normalized_score
    >>> float(normalized_score("hopper", 3234.3))
    100.0
"""

from __future__ import annotations

import numpy as np

from aaren_rl.envs.registry import _KNOWN, EnvSpec, get_env_spec

# env short name -> (random return, expert return)
# One source of truth: the registry's specs (D4RL's REF_MIN_SCORE / REF_MAX_SCORE).
REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    name: (spec.random_score, spec.expert_score)
    for name, spec in _KNOWN.items()
    if spec.random_score is not None and spec.expert_score is not None
}


def normalized_score(env: str | EnvSpec, returns: float | np.ndarray) -> np.ndarray | None:
    """Normalise undiscounted episode returns with the env's reference returns.

    Args:
        env: short name, Gymnasium id or :class:`EnvSpec`.
        returns: one return or an array of returns (any shape).

    Returns:
        ``100 * (returns - random) / (expert - random)`` as a float64 array of the same shape
        (0-d for a scalar), or None when the env has no reference scores.
    """
    spec = env if isinstance(env, EnvSpec) else get_env_spec(env)
    if spec.random_score is None or spec.expert_score is None:
        return None
    r = np.asarray(returns, dtype=np.float64)
    return 100.0 * (r - spec.random_score) / (spec.expert_score - spec.random_score)
