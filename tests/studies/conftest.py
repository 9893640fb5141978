"""The studies are not installed: put the repository root on ``sys.path`` so that
``import studies.ablation`` works however pytest was started (the spawned workers of a grid
inherit the path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _run_study(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """``studies/<script> 0`` with this venv's commands, ``WORK`` and ``OUT`` under
    ``tmp_path`` and ``env`` on top; it must exit 0."""
    full_env = {
        **os.environ,
        "BIN": str(Path(sys.executable).parent),
        "WORK": str(tmp_path / "work"),
        "OUT": str(tmp_path / "out"),
        **env,
    }
    cmd = [str(Path(ROOT) / "studies" / script), "0"]
    done = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture
def run_study():
    """``run_study(script, tmp_path, **env)``: see ``_run_study``."""
    return _run_study
