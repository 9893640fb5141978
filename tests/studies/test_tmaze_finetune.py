"""studies/tmaze_finetune.sh: offline run, fine-tuning, evaluations before and after, a summary,
and nothing redone when run again. Tiny budget: the numbers are not the point here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_script_finetunes_scores_summarises_and_resumes(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BIN": str(Path(sys.executable).parent),
        "WORK": str(tmp_path / "work"),
        "OUT": str(tmp_path / "out"),
        "OFFLINE_STEPS": "3",
        "ENV_STEPS": "300",
        "EPISODES": "2",
        "DECISION_WEIGHT": "0",
        "UPDATES": "0.02",
    }
    script = [str(ROOT / "studies" / "tmaze_finetune.sh"), "0"]
    first = subprocess.run(script, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
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
    again = subprocess.run(script, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "wrote" not in again.stdout and "run:" not in again.stdout  # nothing redone
