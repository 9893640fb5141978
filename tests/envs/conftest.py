"""Shared fixtures: offline Minari root in a tmp dir, a tiny synthetic D4RL file maker."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _offline_minari(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "minari"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def synthetic_arrays(
    lengths: tuple[int, ...] = (5, 3, 7),
    terminal: tuple[bool, ...] = (True, False, True),
    trailing: int = 0,
    obs_dim: int = 11,
    act_dim: int = 3,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Episodes of the given lengths; each ends in a terminal (True) or a timeout (False)."""
    rng = np.random.default_rng(seed)
    n = sum(lengths) + trailing
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    end = np.cumsum(lengths) - 1
    terminals[end[np.array(terminal)]] = True
    timeouts[end[~np.array(terminal)]] = True
    return {
        "observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        "rewards": np.arange(n, dtype=np.float32),  # easy to check returns-to-go by hand
        "terminals": terminals,
        "timeouts": timeouts,
        "next_observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
    }


def write_h5(path: Path, arrays: dict[str, np.ndarray], **attrs) -> Path:
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
        for k, v in attrs.items():
            f.attrs[k] = v
    return path


@pytest.fixture
def h5_file(tmp_path: Path) -> Path:
    return write_h5(tmp_path / "synthetic.hdf5", synthetic_arrays(), env_id="Hopper-v5")


class Synth:
    """The helpers above as a fixture (tests/ has no packages, so no cross-file imports)."""

    arrays = staticmethod(synthetic_arrays)
    write = staticmethod(write_h5)


@pytest.fixture
def synth() -> type[Synth]:
    return Synth
