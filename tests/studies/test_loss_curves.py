"""studies/loss_curves.py: runs grouped by a config field, mean ± std over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aaren_rl.errors import ConfigError
from studies.loss_curves import group_curves


def fake_run(root: Path, name: str, precision: str, losses: list[float]) -> Path:
    run = root / name
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"backbone": "aaren", "precision": precision}))
    lines = [{"step": 10 * (i + 1), "train/loss": x} for i, x in enumerate(losses)]
    lines.insert(1, {"step": 15, "eval/score": 1.0})  # other metrics are skipped
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    return run


def test_groups_by_field_and_averages_seeds(tmp_path: Path):
    runs = [
        fake_run(tmp_path, "a", "fp32", [1.0, 0.5]),
        fake_run(tmp_path, "b", "fp32", [3.0, 1.5]),
        fake_run(tmp_path, "c", "bf16", [2.0, 1.0, 0.7]),
    ]
    curves = group_curves(runs, "precision", "train/loss")
    assert set(curves) == {"aaren / fp32", "aaren / bf16"}
    fp32 = curves["aaren / fp32"]
    assert fp32["steps"] == [10, 20] and fp32["mean"] == [2.0, 1.0] and fp32["std"] == [1.0, 0.5]
    assert (fp32["seeds"], fp32["final_mean"]) == (2, 1.0)
    assert curves["aaren / bf16"]["final_mean"] == pytest.approx(0.7)


def test_a_folder_that_is_not_a_run_is_an_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="not an aaren-train run directory"):
        group_curves([tmp_path], "precision", "train/loss")
