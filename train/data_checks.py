"""Checks on the training data that the loaders cannot make: they need the model's view.

- :func:`dataset_fingerprint`: a SHA-256 of the loaded arrays, recorded in the run's trainer
  state so that ``--resume`` refuses a dataset that changed under the same path (new data
  would also bring a new normalisation: the run would silently become another run).
- :func:`check_action_range`: continuous actions must lie in [-1, 1], the range of the tanh
  action head; actions outside it can never be predicted, so training on them is refused.
- :func:`warn_long_episodes`: the episode recipe trains only on each episode's first
  ``--episode-length`` steps; say so when the data holds longer episodes.
- :func:`warn_target_return`: the return-to-go an episode starts from lies far above every
  episode's return in the data, where the model never saw it.
- :func:`warn_degenerate_data`: observation columns that never change (or every observation
  identical), values so large that normalisation squeezes the rest of their column to ~0,
  returns far beyond what ``--return-scale`` brings near 1; each named.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

import numpy as np

from aaren_rl.errors import DatasetError

__all__ = [
    "check_action_range",
    "dataset_fingerprint",
    "warn_degenerate_data",
    "warn_long_episodes",
    "warn_target_return",
]

# A target return this many times the data's best episode return gets a warning.
TARGET_RETURN_WARN_RATIO = 2.0

# |observation| beyond this: one outlier squeezes the rest of its column to ~0 once normalised.
HUGE_OBSERVATION = 1e6
# |return| / return_scale beyond this: the return-to-go input is far from the ~1 it is scaled to.
HUGE_SCALED_RETURN = 1e3

# float32 rounding of data written as exactly +-1 may land a hair outside.
ACTION_TOLERANCE = 1e-4


def dataset_fingerprint(dataset: Any) -> str:
    """``sha256:HEX`` of every trajectory's observations, actions, rewards and end flag.

    Computed on the loaded arrays (not the file), so it is the same for every source (D4RL
    HDF5, Minari, demo) and blind to metadata that does not change what is trained on.
    """
    h = hashlib.sha256()
    for t in dataset.trajectories:
        for a in (t.observations, t.actions, t.rewards):
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        h.update(b"T" if t.terminated else b"F")
    return "sha256:" + h.hexdigest()


def check_action_range(dataset: Any, discrete: bool = False) -> None:
    """Refuse continuous actions outside [-1, 1] (the tanh head's range), naming the count.

    Discrete datasets (``dataset.discrete_actions``: choices for a categorical head) pass.
    """
    if discrete or getattr(dataset, "discrete_actions", False):
        return
    actions = np.concatenate([t.actions for t in dataset.trajectories])
    outside = np.abs(actions) > 1.0 + ACTION_TOLERANCE
    if not np.isfinite(actions).all():
        raise DatasetError(f"{dataset.spec}: actions hold NaN or Inf; clean the dataset first")
    if outside.any():
        raise DatasetError(
            f"{dataset.spec}: {int(outside.sum())} of {actions.size} action values lie outside "
            f"[-1, 1] (range {actions.min():.3g} .. {actions.max():.3g}); the policy's tanh "
            "head can never produce them. Rescale (or clip) the actions to [-1, 1], the "
            "action space of the MuJoCo tasks, and save the dataset again"
        )


def warn_long_episodes(dataset: Any, recipe: str, episode_length: int) -> None:
    longest = max(len(t) for t in dataset.trajectories)
    if recipe == "episode" and longest > episode_length:
        print(
            f"[aaren-rl] warning: episodes up to {longest} steps, --episode-length "
            f"{episode_length}: the episode recipe trains only on their first "
            f"{episode_length} steps",
            file=sys.stderr,
        )


def warn_target_return(dataset: Any, target: float) -> bool:
    """Warn when ``target`` is over ``TARGET_RETURN_WARN_RATIO`` x the best episode return.

    The return-to-go input never held such a value in training. Where it matters was measured
    (docs/results.md, halfcheetah-medium-replay): conditioned on 6000 with the data's best
    episode at 1,604, two of three seeds of each backbone ended near 1 (normalised), and the
    same checkpoints scored 10.7-15.2 conditioned on 1,600. A warning, not an error: on
    halfcheetah-medium, at nearly the same ratio (3.6), nothing collapsed. Returns whether it
    warned.
    """
    best = float(dataset.episode_returns.max())
    if best <= 0 or target <= TARGET_RETURN_WARN_RATIO * best:
        return False
    print(
        f"[aaren-rl] warning: the target return {target:g} is {target / best:.1f}x the best "
        f"episode return in the dataset ({best:,.0f}); the model never saw a return-to-go "
        "that high and may act badly when conditioned on it (docs/results.md, "
        "halfcheetah-medium-replay). Evaluate at the data's best as well: aaren-eval "
        f"--target-return {target:g} {best:.0f}",
        file=sys.stderr,
    )
    return True


def _columns(cols: np.ndarray) -> str:
    shown = ", ".join(str(int(c)) for c in cols[:10])
    return shown + (f", ... ({len(cols)} in all)" if len(cols) > 10 else "")


def warn_degenerate_data(dataset: Any, return_scale: float) -> list[str]:
    """Warn (stderr) about data that trains without error but cannot train well; returns the
    warnings. Observation columns are named by index (0-based)."""
    obs = np.concatenate([t.observations for t in dataset.trajectories]).reshape(
        -1, dataset.obs_dim
    )
    warnings = []
    constant = np.flatnonzero(np.ptp(obs, axis=0) == 0)
    encoded = dataset.metadata.get("observation_nvec") is not None  # one-hot ids: expected
    if len(constant) == obs.shape[1] and len(obs) > 1:
        warnings.append(
            f"every observation in {dataset.spec} is identical ({len(obs)} rows): the agent "
            "cannot tell one state from another; check how the data was recorded"
        )
    elif len(constant) and not encoded:
        warnings.append(
            f"observation column(s) {_columns(constant)} of {dataset.spec} never change: they "
            "carry no information (normalisation divides them by a small floor)"
        )
    peak = np.max(np.abs(obs), axis=0)
    huge = np.flatnonzero(peak > HUGE_OBSERVATION)
    if len(huge):
        c = int(huge[np.argmax(peak[huge])])
        warnings.append(
            f"observation column(s) {_columns(huge)} of {dataset.spec} reach |x| up to "
            f"{peak[c]:.3g} (column {c}): normalised by the column's std, a few outliers like "
            "these squeeze every other value of the column to ~0; check for sentinel values"
        )
    best = float(np.max(np.abs(dataset.episode_returns)))
    if best / return_scale > HUGE_SCALED_RETURN:
        warnings.append(
            f"episode returns in {dataset.spec} reach {best:.3g}, {best / return_scale:.3g} "
            f"after --return-scale {return_scale:g}: raise --return-scale to about the largest "
            "return (the return-to-go input is meant to be near 1)"
        )
    for w in warnings:
        print(f"[aaren-rl] warning: {w}", file=sys.stderr)
    return warnings
