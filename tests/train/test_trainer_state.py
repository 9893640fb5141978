"""The trainer-state codec: plain values and tensors round-trip exactly through JSON +
safetensors; anything else is refused on write, and on read nothing but data is built."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from aaren_rl.errors import CheckpointError
from aaren_rl.train.trainer_state import load_trainer_state, save_trainer_state


def _state() -> dict:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return {
        "step": 7,
        "optimizer": opt.state_dict(),  # int-keyed dict, tuple betas, 0-d tensors
        "sampler": {"rng": np.random.default_rng(3).bit_generator.state},  # 128-bit ints
        "python_rng": random.Random(5).getstate(),  # nested tuples
        "torch_rng": torch.get_rng_state(),  # uint8 tensor
        "odd": {"$not-a-tag": [math.nan, math.inf, -math.inf, None, True, "x", 0.1]},
    }


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


def test_round_trip_is_exact(tmp_path: Path) -> None:
    state = _state()
    save_trainer_state(tmp_path, state)
    assert _same(state, load_trainer_state(tmp_path))
    json.loads((tmp_path / "trainer.json").read_text())  # strict JSON: no NaN literals


def test_values_without_a_safe_encoding_are_refused_on_write(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="no safe encoding"):
        save_trainer_state(tmp_path, {"hook": print})


def test_an_optimizer_restored_from_it_continues_identically(tmp_path: Path) -> None:
    def make() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        return model, torch.optim.AdamW(model.parameters(), lr=1e-2)

    def step(model: torch.nn.Module, opt: torch.optim.Optimizer, seed: int) -> None:
        x = torch.randn(8, 3, generator=torch.Generator().manual_seed(seed))
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()

    a, opt_a = make()
    for i in range(3):
        step(a, opt_a, i)
    save_trainer_state(tmp_path, {"optimizer": opt_a.state_dict(), "weights": a.state_dict()})
    b, opt_b = make()
    loaded = load_trainer_state(tmp_path)
    b.load_state_dict(loaded["weights"])
    opt_b.load_state_dict(loaded["optimizer"])
    for i in range(3, 6):
        step(a, opt_a, i)
        step(b, opt_b, i)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_a_missing_tensor_file_names_it(tmp_path: Path) -> None:
    save_trainer_state(tmp_path, {"t": torch.ones(2)})
    (tmp_path / "trainer.safetensors").unlink()
    with pytest.raises(CheckpointError, match="trainer.safetensors"):
        load_trainer_state(tmp_path)


def test_another_format_version_is_refused(tmp_path: Path) -> None:
    save_trainer_state(tmp_path, {"step": 1})
    doc = json.loads((tmp_path / "trainer.json").read_text())
    (tmp_path / "trainer.json").write_text(json.dumps({**doc, "format": 99}))
    with pytest.raises(CheckpointError, match="format 99"):
        load_trainer_state(tmp_path)
