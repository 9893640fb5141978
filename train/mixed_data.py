"""``--dataset A+B+...``: several dataset files trained on as one (e.g. T-Maze at several
lengths, which ``aaren-collect`` writes one file per length, for ``--curriculum``).

The episodes are concatenated in the order given; the observation statistics are those of
all of them; the environment and metadata are the first file's. Every part must have the
same observation and action sizes and the same kind of actions.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from aaren_rl.envs import load_dataset
from aaren_rl.envs.datasets import STD_FLOOR, OfflineDataset
from aaren_rl.errors import DatasetError

__all__ = ["SEPARATOR", "load_training_data"]

SEPARATOR = "+"


def load_training_data(spec: str, download: bool = False) -> OfflineDataset:
    """``load_dataset(spec)``, or the parts of ``A+B+...`` joined into one dataset."""
    parts = [p.strip() for p in spec.split(SEPARATOR)] if SEPARATOR in spec else [spec]
    if len(parts) == 1:
        return load_dataset(spec, download=download)
    if not all(parts):
        raise DatasetError(f"--dataset {spec!r}: an empty part between '{SEPARATOR}' signs")
    loaded = [load_dataset(p, download=download) for p in parts]
    first = loaded[0]
    for p, ds in zip(parts[1:], loaded[1:]):
        if _shape(ds) != _shape(first):
            raise DatasetError(
                f"--dataset: {p} has {_shape(ds)}, {parts[0]} has {_shape(first)}: the parts "
                "of one dataset must match"
            )
    trajs = [t for ds in loaded for t in ds.trajectories]
    obs = np.concatenate([t.observations for t in trajs])
    return dataclasses.replace(
        first,
        trajectories=trajs,
        state_mean=obs.mean(0).astype(np.float32),
        state_std=(obs.std(0) + STD_FLOOR).astype(np.float32),
        spec=spec,
    )


def _shape(ds: OfflineDataset) -> str:
    kind = f"Discrete({ds.num_actions})" if ds.num_actions else "float"
    return f"observations of {ds.obs_dim}, {kind} actions of {ds.act_dim}"
