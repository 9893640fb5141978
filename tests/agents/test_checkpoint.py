"""Checkpoints: self-describing, atomic, and clear about corruption and incompatibility."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aaren_rl.aaren_policy import BackboneConfig, DecisionModel, DecisionModelConfig, __version__
from aaren_rl.agents import CheckpointError, DecisionAgent
from aaren_rl.fileio import atomic_directory


@pytest.fixture(params=["aaren", "transformer"])
def agent(request) -> DecisionAgent:
    torch.manual_seed(0)
    cfg = DecisionModelConfig(
        obs_dim=4, act_dim=2, backbone=request.param, net=BackboneConfig(dim=16, num_layers=1)
    )
    return DecisionAgent(
        DecisionModel(cfg), np.arange(4.0), np.ones(4) * 2, 100.0, 50.0,
        env_id="Hopper-v5", metadata={"dataset": "d4rl:x.hdf5", "step": 7},
    )  # fmt: skip


def test_round_trip(agent: DecisionAgent, tmp_path: Path) -> None:
    path = agent.save(tmp_path / "ckpt")
    meta = json.loads((path / "agent.json").read_text())
    for key in ("model_config", "state_mean", "state_std", "return_scale", "target_returns",
                "env_id", "dataset", "step", "package_version", "format"):  # fmt: skip
        assert key in meta, key
    assert meta["package_version"] == __version__
    loaded = DecisionAgent.load(path)
    obs = np.random.default_rng(0).normal(size=(2, 4))
    np.testing.assert_array_equal(agent.predict(obs), loaded.predict(obs))
    assert loaded.env_id == "Hopper-v5" and loaded.target_return == 50.0
    assert loaded.metadata["dataset"] == "d4rl:x.hdf5"


def test_missing_and_corrupt(agent: DecisionAgent, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        DecisionAgent.load(tmp_path / "nothing")
    path = agent.save(tmp_path / "ckpt")
    (path / "agent.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        DecisionAgent.load(path)
    path = agent.save(tmp_path / "ckpt2")
    (path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        DecisionAgent.load(path)
    path = agent.save(tmp_path / "ckpt3")
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        DecisionAgent.load(path)


def test_incompatible_version_and_model(agent: DecisionAgent, tmp_path: Path) -> None:
    path = agent.save(tmp_path / "ckpt")
    meta = json.loads((path / "agent.json").read_text())
    (path / "agent.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(CheckpointError, match="format 99"):
        DecisionAgent.load(path)
    meta["model_config"]["net"]["dim"] = 32  # weights no longer fit
    (path / "agent.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not match"):
        DecisionAgent.load(path)
    meta["model_config"]["backbone"] = "lstm"
    (path / "agent.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not fit"):
        DecisionAgent.load(path)


def test_atomic_directory_keeps_the_old_version_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("new, half written")
        raise RuntimeError("crash while writing")
    assert (target / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp left behind


def test_a_swap_cut_between_its_two_renames_is_recovered(
    agent: DecisionAgent, tmp_path: Path
) -> None:
    path = agent.save(tmp_path / "ckpt")
    # The state a crash between "path -> .path.old" and "tmp -> path" leaves behind.
    path.rename(tmp_path / ".ckpt.old")
    loaded = DecisionAgent.load(path)
    obs = np.zeros((1, 4))
    np.testing.assert_array_equal(agent.predict(obs), loaded.predict(obs))
    assert path.is_dir() and not (tmp_path / ".ckpt.old").exists()


def test_non_finite_weights_are_refused(agent: DecisionAgent, tmp_path: Path) -> None:
    with torch.no_grad():
        next(agent.model.parameters()).fill_(float("nan"))  # a diverged run
    path = agent.save(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="NaN or Inf .* the training diverged"):
        DecisionAgent.load(path)
