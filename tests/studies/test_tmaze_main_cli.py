"""studies/tmaze_main_cli.sh (make results-tmaze) runs the T-Maze recipe through the main
commands, writes one aaren-eval JSON per seed and length and a summary, and skips finished
pieces when run again. Tiny budget: the numbers are not the point here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_script_trains_evaluates_summarises_and_resumes(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BIN": str(Path(sys.executable).parent),
        "WORK": str(tmp_path / "work"),
        "OUT": str(tmp_path / "out"),
        "STEPS": "4",
        "EPISODES": "2",
    }
    script = [str(ROOT / "studies" / "tmaze_main_cli.sh"), "0"]
    first = subprocess.run(script, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
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
    again = subprocess.run(script, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "aaren-train" not in again.stdout and "run:" not in again.stdout  # nothing redone
    assert "wrote" not in again.stdout
