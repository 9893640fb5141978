"""Fixtures shared across the test packages: tiny real-format datasets made on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("MUJOCO_GL", "egl")


def make_hopper_like_hdf5(
    path: Path, episodes: int = 12, obs_dim: int = 11, act_dim: int = 3, seed: int = 0
) -> Path:
    """A small D4RL-format file with Hopper-v5's dimensions and random contents."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(15, 40, size=episodes)
    n = int(lengths.sum())
    ends = np.cumsum(lengths) - 1
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    terminals[ends[::2]] = True
    timeouts[ends[1::2]] = True
    with h5py.File(path, "w") as f:
        f["observations"] = rng.normal(size=(n, obs_dim)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32)
        f["rewards"] = rng.uniform(0, 3, size=n).astype(np.float32)
        f["terminals"] = terminals
        f["timeouts"] = timeouts
        f.attrs["env_id"] = "Hopper-v5"
    return path


@pytest.fixture
def tiny_hopper_dataset(tmp_path: Path) -> Path:
    return make_hopper_like_hdf5(tmp_path / "tiny-hopper.hdf5")
