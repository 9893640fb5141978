"""studies/ablation.py: rows of overrides, a 2-run grid in a process pool, resume, summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aaren_rl.errors import ConfigError
from studies.ablation import AblationConfig, run_ablation, summarize


def test_rows_are_checked_before_any_run() -> None:
    with pytest.raises(ConfigError, match="unique"):
        AblationConfig(rows=("a", "a:padding=left"))
    with pytest.raises(ConfigError):  # a value the model refuses, caught before any run
        AblationConfig(rows=("a:model.activation=swish",))
    with pytest.raises(ConfigError, match="unknown field"):
        AblationConfig(rows=("a:model.actvation=relu",))
    with pytest.raises(ConfigError, match="plain name"):
        AblationConfig(rows=("../a:padding=left",))


TINY_BASE = (
    "precision=fp32",
    "model.dim=16",
    "model.num_layers=1",
    "recipe=window",
    "context_length=8",
    "batch_size=8",
    "log_every=1",
)


@pytest.mark.slow
def test_two_run_grid_resumes_and_summarises(tiny_hopper_dataset: Path, tmp_path: Path) -> None:
    cfg = AblationConfig(
        datasets=(f"d4rl:{tiny_hopper_dataset}",),
        rows=("baseline", "relu:model.activation=relu"),
        base=TINY_BASE,
        backbones=("aaren",),
        seeds=(0,),
        steps=3,
        eval_episodes=1,
        eval_max_episode_steps=20,
        jobs=2,
        device="cpu",
        out_dir=tmp_path / "out",
    )
    rows = run_ablation(cfg)
    files = sorted(p.name for p in (tmp_path / "out").glob("*__s0.json"))
    assert files == ["baseline__tiny-hopper__aaren__s0.json", "relu__tiny-hopper__aaren__s0.json"]
    rec = json.loads((tmp_path / "out" / files[1]).read_text())
    assert rec["config"]["model"]["activation"] == "relu" and rec["precision"] == "fp32"
    assert set(rec["acting"]) == {"recurrent", "window"} and len(rec["loss_curve"]) == 3
    assert [(r["row"], r["acting"]) for r in rows] == [
        ("baseline", "recurrent"), ("baseline", "window"),
        ("relu", "recurrent"), ("relu", "window"),
    ]  # fmt: skip
    assert rows[0]["vs_baseline"] == 0.0 and rows[2]["vs_baseline"] is not None
    assert "| relu | aaren | recurrent | 1 |" in (tmp_path / "out" / "summary.md").read_text()
    assert (tmp_path / "out" / "loss_curves.png").stat().st_size > 0
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*__s0.json")}
    run_ablation(cfg)  # everything done: nothing is trained again
    assert stamp == {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*__s0.json")}
    assert summarize(tmp_path / "out", ["baseline", "relu"]) == rows
