"""aaren-train's precision and ablation knobs on tiny data: each knob
trains (finite loss), is recorded in config.json and the checkpoint, and checkpoints stay
float32 whatever the training precision."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from safetensors.torch import load_file

from aaren_rl.aaren_policy.precision import resolve_precision
from aaren_rl.train.config import TrainConfig
from aaren_rl.train.loop import train


def _cfg(dataset: Path, run_dir: Path, **kw) -> TrainConfig:
    base = {
        "dataset": f"d4rl:{dataset}",
        "steps": 6,
        "recipe": "window",
        "context_length": 8,
        "batch_size": 8,
        "eval_episodes": 0,
        "run_dir": run_dir,
        "threads": 1,
        "progress": False,
        "log_every": 3,
    }
    cfg = TrainConfig(**{**base, **kw})
    cfg.model.dim, cfg.model.num_layers = 16, 1
    return cfg


@pytest.mark.parametrize(
    "knobs",
    [
        {"precision": "bf16"},
        {"precision": "fp32", "padding": "left"},
        {"precision": "fp32", "loss_reduction": "sum"},
        {"precision": "fp32", "state_encoder": "mlp"},
        {"precision": "bf16", "backbone": "transformer", "padding": "left"},
    ],
    ids=["bf16", "left", "sum", "mlp", "transformer-bf16-left"],
)
def test_knobs_train_and_are_recorded(knobs: dict, tiny_hopper_dataset: Path, tmp_path) -> None:
    run_dir = tmp_path / "run"
    result = train(_cfg(tiny_hopper_dataset, run_dir, **knobs))
    assert math.isfinite(result.final_loss)
    assert result.precision == knobs["precision"]
    config = json.loads((run_dir / "config.json").read_text())
    for key, value in knobs.items():
        assert config[key] == value
    meta = json.loads((run_dir / "checkpoint" / "agent.json").read_text())
    assert meta["train_precision"] == knobs["precision"]
    if knobs.get("state_encoder") == "mlp":
        assert meta["model_config"]["state_encoder"] == "mlp"
    weights = load_file(str(run_dir / "checkpoint" / "model.safetensors"))
    assert {str(w.dtype) for w in weights.values()} == {"torch.float32"}


def test_loss_reduction_sum_is_act_dim_times_mean(tiny_hopper_dataset: Path, tmp_path) -> None:
    """Same seed, one step: the summed loss is act_dim (3) times the mean one."""
    mean = train(
        _cfg(tiny_hopper_dataset, tmp_path / "a", steps=1, precision="fp32", loss_reduction="mean")
    )
    total = train(
        _cfg(tiny_hopper_dataset, tmp_path / "b", steps=1, precision="fp32", loss_reduction="sum")
    )
    assert total.final_loss == pytest.approx(3 * mean.final_loss, rel=1e-5)


def test_defaults_auto_precision_and_all_cores() -> None:
    cfg = TrainConfig()
    assert cfg.precision == "auto" and not cfg.compile
    assert cfg.resolved_precision == resolve_precision("auto", "cpu")
    assert cfg.resolved_threads == len(os.sched_getaffinity(0))
    assert TrainConfig(threads=1).resolved_threads == 1
