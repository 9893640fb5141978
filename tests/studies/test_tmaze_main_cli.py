"""studies/tmaze_main_cli.sh (make results-tmaze) runs the T-Maze recipe through the main
commands, writes one aaren-eval JSON per seed and length and a summary, and skips finished
pieces when run again. Tiny budget: the numbers are not the point here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_the_script_trains_evaluates_summarises_and_resumes(tmp_path: Path, run_study) -> None:
    run_study("tmaze_main_cli.sh", tmp_path, STEPS="4", EPISODES="2")
    for L in (1000, 1500, 3000):
        (result,) = json.loads((tmp_path / "out" / f"tmaze-s0-L{L}.json").read_text())["results"]
        assert result["env"] == f"aaren/PassiveTMaze-L{L}-v0" and result["episodes"] == 2
        assert 0.0 <= result["success_rate"] <= 1.0
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert summary.splitlines()[2].startswith("| 0 | ") and "(2 episodes)" in summary
    assert "L = 3000" in summary.splitlines()[0]
    agent = json.loads(
        (tmp_path / "work/runs/tmaze-jitter0.5-s0/checkpoint/agent.json").read_text()
    )
    assert '"score_jitter": 0.5' in json.dumps(agent)  # the recipe's jitter reached aaren-train
    again = run_study("tmaze_main_cli.sh", tmp_path, STEPS="4", EPISODES="2")
    assert "aaren-train" not in again.stdout and "run:" not in again.stdout  # nothing redone
    assert "wrote" not in again.stdout
