"""Fixtures of the eval tests: tiny decision agents and checkpoints (no datasets needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aaren_policy import BackboneConfig, DecisionModel, DecisionModelConfig
from agents import DecisionAgent

HOPPER_OBS, HOPPER_ACT = 11, 3


def tiny_agent(
    backbone: str = "aaren",
    mode: str = "recurrent",
    context_length: int = 20,
    obs_dim: int = HOPPER_OBS,
    seed: int = 0,
) -> DecisionAgent:
    torch.manual_seed(seed)
    net = BackboneConfig(dim=16, num_layers=2, num_heads=2, dropout=0.0)
    model = DecisionModel(DecisionModelConfig(obs_dim, HOPPER_ACT, backbone, net))
    # Larger weights than the N(0, 0.02) init, so that actions are far from 0 and differ.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    return DecisionAgent(
        model,
        np.zeros(obs_dim),
        np.ones(obs_dim),
        return_scale=1000.0,
        target_return=3600.0,
        mode=mode,
        context_length=context_length,
        env_id="Hopper-v5",
        metadata={"target_returns": [3600.0, 1800.0]},
    )


@pytest.fixture
def make_agent():
    """The ``tiny_agent`` factory, for tests that need several agents."""
    return tiny_agent


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models act fastest (and most reproducibly) on one thread; the CI box is shared.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(params=["aaren", "transformer"])
def checkpoint(request, tmp_path: Path) -> Path:
    """A tiny checkpoint of either backbone, for Hopper-v5."""
    return tiny_agent(request.param).save(tmp_path / f"ckpt-{request.param}")


@pytest.fixture
def aaren_checkpoint(tmp_path: Path) -> Path:
    return tiny_agent("aaren").save(tmp_path / "ckpt")
