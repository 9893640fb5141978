"""studies/tmaze_finetune.sh: offline run, fine-tuning, evaluations before and after, a summary,
and nothing redone when run again. Tiny budget: the numbers are not the point here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_the_script_finetunes_scores_summarises_and_resumes(tmp_path: Path, run_study) -> None:
    budget = dict(OFFLINE_STEPS="3", ENV_STEPS="300", EPISODES="2")
    budget.update(DECISION_WEIGHT="0", UPDATES="0.02")
    run_study("tmaze_finetune.sh", tmp_path, **budget)
    out = tmp_path / "out"
    for name, maze in (
        ("offline-s0-L300", 300),
        ("online-s0-L300", 300),
        ("online-s0-L1000", 1000),
    ):
        (result,) = json.loads((out / f"{name}.json").read_text())["results"]
        assert result["env"] == f"aaren/PassiveTMaze-L{maze}-v0" and result["episodes"] == 2
    ft = json.loads((out / "finetune-s0.json").read_text())
    assert ft["env_steps"] >= 300 and ft["updates"] > 0 and ft["num_envs"] == 8
    assert (tmp_path / "work" / "online-u0.02-dw0-s0" / "checkpoint").is_dir()
    summary = (out / "summary.md").read_text()
    assert summary.splitlines()[2].startswith("| 0 | ")
    again = run_study("tmaze_finetune.sh", tmp_path, **budget)
    assert "wrote" not in again.stdout and "run:" not in again.stdout  # nothing redone
