"""--resume finds a run's data from another folder, and accepts the same data under another
path (checked by its fingerprint), but never other data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from aaren_rl.train.cli import main

TINY = ["--model.dim", "16", "--model.num-layers", "1", "--threads", "1", "--no-progress",
        "--eval-episodes", "0", "--checkpoint-every", "2", "--batch-size", "2",
        "--recipe", "window", "--context-length", "5"]  # fmt: skip


@pytest.fixture
def relative_run(tiny_hopper_dataset: Path, tmp_path: Path, monkeypatch) -> Path:
    """A 2-step run started in the dataset's folder with a relative spec."""
    monkeypatch.chdir(tiny_hopper_dataset.parent)
    run = tmp_path / "run"
    assert main(["--dataset", f"d4rl:{tiny_hopper_dataset.name}", "--steps", "2",
                 "--run-dir", str(run), *TINY]) == 0  # fmt: skip
    record = json.loads((run / "dataset.json").read_text())
    assert record["spec"] == f"d4rl:{tiny_hopper_dataset.name}"
    assert record["path"] == str(tiny_hopper_dataset.resolve()) and len(record["sha256"]) == 64
    return run


def test_resume_from_another_folder_uses_the_recorded_path(
    relative_run: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["--run-dir", str(relative_run), "--resume", "--steps", "4", "--no-progress"]) == 0
    assert "using the run's recorded" in capsys.readouterr().out


def test_the_same_data_under_another_path_is_accepted(
    relative_run: Path, tiny_hopper_dataset: Path, tmp_path: Path, capsys
) -> None:
    copy = shutil.copy(tiny_hopper_dataset, tmp_path / "moved.hdf5")
    args = ["--run-dir", str(relative_run), "--resume", "--steps", "4", "--no-progress"]
    assert main([*args, "--dataset", f"d4rl:{copy}"]) == 0, capsys.readouterr().err


def test_other_data_under_another_path_is_refused(
    relative_run: Path, tmp_path: Path, capsys
) -> None:
    import sys

    other = sys.modules["tests.conftest"].make_hopper_like_hdf5(tmp_path / "other.hdf5", seed=7)
    args = ["--run-dir", str(relative_run), "--resume", "--steps", "4", "--no-progress"]
    assert main([*args, "--dataset", f"d4rl:{other}"]) == 2
    err = capsys.readouterr().err
    assert "is not the data the run" in err and "Traceback" not in err


def test_a_lost_dataset_names_the_recorded_file(
    relative_run: Path, tiny_hopper_dataset: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    tiny_hopper_dataset.rename(tmp_path / "hidden.hdf5")
    monkeypatch.chdir(tmp_path)
    assert main(["--run-dir", str(relative_run), "--resume", "--steps", "4"]) == 2
    err = capsys.readouterr().err
    assert f"the run was trained on {tiny_hopper_dataset.resolve()} (sha256 " in err
