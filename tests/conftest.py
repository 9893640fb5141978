"""Fixtures shared by every test package: tiny real-format datasets and tiny agents.

Tests have no packages (so no cross-file imports): the one synthetic-dataset maker, the
one tiny-agent factory and the one loader of the d3rlpy peer's scripts live here and reach
the tests as fixtures (``synth``, ``make_agent``, ``d3rlpy_peer``, ``peer_status``).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("MUJOCO_GL", "egl")

# Tiny tensors: intra-op threads only add overhead, and on a shared 2-core machine spinning
# OpenMP workers make every small op much slower under load.
torch.set_num_threads(1)

HOPPER_OBS, HOPPER_ACT = 11, 3


# --- datasets -------------------------------------------------------------------------------


def synthetic_arrays(
    lengths: tuple[int, ...] = (5, 3, 7),
    terminal: tuple[bool, ...] | None = (True, False, True),
    trailing: int = 0,
    obs_dim: int = HOPPER_OBS,
    act_dim: int = HOPPER_ACT,
    seed: int = 0,
    rewards: str = "arange",
) -> dict[str, np.ndarray]:
    """D4RL arrays for episodes of the given lengths.

    Episode ``i`` ends in a terminal if ``terminal[i]`` else in a timeout (``terminal=None``
    alternates, starting with a terminal). ``trailing`` extra steps carry neither flag.
    ``rewards="arange"`` makes returns-to-go easy to check by hand; ``"uniform"`` draws
    U(0, 3) like a locomotion task.
    """
    rng = np.random.default_rng(seed)
    if terminal is None:
        terminal = tuple(i % 2 == 0 for i in range(len(lengths)))
    n = sum(lengths) + trailing
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    end = np.cumsum(lengths) - 1
    terminals[end[np.array(terminal)]] = True
    timeouts[end[~np.array(terminal)]] = True
    r = np.arange(n, dtype=np.float32) if rewards == "arange" else rng.uniform(0, 3, n)
    return {
        "observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        "rewards": r.astype(np.float32),
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


def make_hopper_like_hdf5(path: Path, episodes: int = 12, seed: int = 0) -> Path:
    """A small D4RL-format file with Hopper-v5's dimensions and random contents."""
    lengths = tuple(int(n) for n in np.random.default_rng(seed).integers(15, 40, episodes))
    arrays = synthetic_arrays(lengths, None, seed=seed, rewards="uniform")
    return write_h5(path, arrays, env_id="Hopper-v5")


class Synth:
    """The dataset helpers above, as a fixture."""

    arrays = staticmethod(synthetic_arrays)
    write = staticmethod(write_h5)
    hopper_like = staticmethod(make_hopper_like_hdf5)


@pytest.fixture
def synth() -> type[Synth]:
    return Synth


@pytest.fixture
def h5_file(tmp_path: Path) -> Path:
    return write_h5(tmp_path / "synthetic.hdf5", synthetic_arrays(), env_id="Hopper-v5")


@pytest.fixture
def tiny_hopper_dataset(tmp_path: Path) -> Path:
    return make_hopper_like_hdf5(tmp_path / "tiny-hopper.hdf5")


@pytest.fixture(autouse=True)
def _offline_minari(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test sees an empty, private Minari root and no hub."""
    root = tmp_path / "minari"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


# --- agents ---------------------------------------------------------------------------------


def tiny_agent(
    backbone: str = "aaren",
    mode: str = "recurrent",
    context_length: int = 20,
    obs_dim: int = HOPPER_OBS,
    act_dim: int = HOPPER_ACT,
    seed: int = 0,
    init_std: float | None = 0.3,
    state_mean: np.ndarray | None = None,
    state_std: np.ndarray | None = None,
    return_scale: float = 1000.0,
    target_return: float = 3600.0,
    memory_horizon: int = 0,
):
    """A 2-layer, d = 16 decision agent for Hopper-v5's shapes (or the given ones).

    ``init_std`` re-draws the weights from N(0, init_std) so that actions are far from 0 and
    differ between agents (``None`` keeps the model's own N(0, 0.02) init).
    """
    from aaren_rl.aaren_policy import BackboneConfig, DecisionModel, DecisionModelConfig
    from aaren_rl.agents import DecisionAgent

    torch.manual_seed(seed)
    net = BackboneConfig(dim=16, num_layers=2, num_heads=2, dropout=0.0)
    model = DecisionModel(DecisionModelConfig(obs_dim, act_dim, backbone, net))
    if init_std is not None:
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() > 1:
                    p.normal_(0.0, init_std)
    return DecisionAgent(
        model,
        np.zeros(obs_dim) if state_mean is None else state_mean,
        np.ones(obs_dim) if state_std is None else state_std,
        return_scale=return_scale,
        target_return=target_return,
        mode=mode,
        context_length=context_length,
        env_id="Hopper-v5",
        metadata={"target_returns": [3600.0, 1800.0]},
        memory_horizon=memory_horizon,
    )


@pytest.fixture
def make_agent():
    """The ``tiny_agent`` factory, for tests that need several agents."""
    return tiny_agent


@pytest.fixture(params=["aaren", "transformer"])
def checkpoint(request, tmp_path: Path) -> Path:
    """A tiny checkpoint of either backbone, for Hopper-v5."""
    return tiny_agent(request.param).save(tmp_path / f"ckpt-{request.param}")


@pytest.fixture
def aaren_checkpoint(tmp_path: Path) -> Path:
    return tiny_agent("aaren").save(tmp_path / "ckpt")


# --- the d3rlpy peer script ------------------------------------------------------------------


def _peer_script(name: str):
    """A script of bench/peer/, loaded by path as its own venv runs it (no aaren_rl import)."""
    path = Path(__file__).resolve().parents[1] / "bench" / "peer" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"peer_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture
def d3rlpy_peer():
    """bench/peer/d3rlpy_dt.py (numpy at import, torch and d3rlpy inside the functions that
    need them)."""
    return _peer_script("d3rlpy_dt")


@pytest.fixture
def peer_status():
    """bench/peer/status.py, where each peer run of a grid stands."""
    return _peer_script("status")


# --- crafted files: a command's memory and time, bounded --------------------------------------

MEMORY_CAP = 1536 * 2**20  # address space of a process reading a crafted file (1.5 GiB)


def run_limited(code: str, timeout: float = 120, memory: int = MEMORY_CAP):
    """Run ``code`` in a fresh Python whose address space is capped (``RLIMIT_AS``), with a
    wall-clock timeout: a crafted file that made a loader allocate gigabytes fails there with
    MemoryError, one that made it hang fails the timeout, instead of taking the machine down."""
    import subprocess
    import sys

    preamble = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))\n"
    return subprocess.run(
        [sys.executable, "-c", preamble + code], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def limited():
    """``run_limited`` as a fixture."""
    return run_limited
