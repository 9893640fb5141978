"""Environments, offline datasets, sampling and collection for aaren-rl.

Imports stay light: stable_baselines3 and minari are imported lazily inside the functions
that need them.
"""

from envs.datasets import (
    OfflineDataset,
    Trajectory,
    check_dataset_matches_env,
    load_dataset,
)
from envs.errors import DatasetError, EnvError
from envs.registry import EnvSpec, get_env_spec, make_env, make_vec_env
from envs.sampling import Batch, EpisodeSampler, WindowSampler, make_sampler
from envs.scores import REFERENCE_SCORES, normalized_score

__all__ = [
    "REFERENCE_SCORES",
    "Batch",
    "DatasetError",
    "EnvError",
    "EnvSpec",
    "EpisodeSampler",
    "OfflineDataset",
    "Trajectory",
    "WindowSampler",
    "check_dataset_matches_env",
    "get_env_spec",
    "load_dataset",
    "make_env",
    "make_sampler",
    "make_vec_env",
    "normalized_score",
]
