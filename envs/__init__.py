"""Environments, offline datasets, sampling and collection for aaren-rl.

Imports stay light: stable_baselines3 and minari are imported lazily inside the functions
that need them, and the samplers (which need torch) on first use, so that evaluating an
ONNX policy (``aaren-eval --onnx``) never imports torch.
"""

from typing import Any

from aaren_rl.envs.datasets import (
    OfflineDataset,
    Trajectory,
    check_dataset_matches_env,
    close_open_episode,
    load_dataset,
)
from aaren_rl.envs.registry import EnvSpec, get_env_spec, make_env
from aaren_rl.envs.scores import REFERENCE_SCORES, normalized_score
from aaren_rl.errors import DatasetError, EnvError

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
    "close_open_episode",
    "get_env_spec",
    "load_dataset",
    "make_env",
    "make_sampler",
    "normalized_score",
]


_LAZY = {"Batch", "EpisodeSampler", "WindowSampler", "make_sampler"}


def __getattr__(name: str) -> Any:  # PEP 562: torch is imported with the samplers only
    if name in _LAZY:
        from aaren_rl.envs import sampling

        return getattr(sampling, name)
    raise AttributeError(f"module 'aaren_rl.envs' has no attribute {name!r}")
