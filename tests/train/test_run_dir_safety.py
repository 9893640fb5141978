"""A crafted run directory: config.json is checked (types, env id) before --resume uses it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from aaren_rl.errors import RunDirError
from aaren_rl.train.run_dir import read_saved_config


def test_an_env_that_names_a_module_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    marker = tmp_path / "IMPORTED"
    (tmp_path / "aaren_run_mod.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "aaren_run_mod", raising=False)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"env": "aaren_run_mod:Hopper-v5"}))
    with pytest.raises(RunDirError, match=r"config\.json: env.*not a plain Gymnasium id"):
        read_saved_config(run)
    assert not marker.exists()


@pytest.mark.parametrize(
    "saved", [{"steps": "100"}, {"learning_rate": [1]}, {"payload": 1}, [1, 2]]
)
def test_wrong_types_are_refused(tmp_path: Path, saved):
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(RunDirError, match=r"config\.json"):
        read_saved_config(tmp_path)
