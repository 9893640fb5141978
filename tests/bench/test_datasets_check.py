"""`aaren-bench datasets`: the attrs check, the record written and compared, and failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from aaren_rl.bench.cli import main


def _collected_like(synth, path: Path, seed: int = 0, episodes_attr: int | None = None) -> Path:
    """A Hopper-shaped file with the attrs aaren-collect writes (all episodes counted)."""
    lengths = (12, 9, 15, 11)
    arrays = synth.arrays(lengths, None, seed=seed, rewards="uniform")
    ends = np.cumsum(lengths)
    rets = np.add.reduceat(arrays["rewards"], np.concatenate([[0], ends[:-1]]))
    return synth.write(
        path,
        arrays,
        env_id="Hopper-v5",
        transitions=int(sum(lengths)),
        episodes=len(lengths) if episodes_attr is None else episodes_attr,
        episode_return_mean=float(rets.mean()),
    )


def test_record_round_trip_and_a_changed_file_fails(tmp_path: Path, synth, capsys):
    grid, record = tmp_path / "grid", tmp_path / "datasets.json"
    grid.mkdir()
    _collected_like(synth, grid / "hopper-medium.hdf5")
    args = ["datasets", "--root", str(grid), "--expect", "None", "--write-record", str(record)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "[attrs: ok (all episodes)]" in out and "[record: none]" in out
    row = json.loads(record.read_text())["files"]["hopper-medium.hdf5"]
    assert row["transitions"] == 47 and row["episodes"] == 4 and len(row["sha256"]) == 64

    assert main(["datasets", "--root", str(grid), "--expect", str(record)]) == 0
    assert "[record: ok]" in capsys.readouterr().out

    other = tmp_path / "rebuilt"  # same name, other contents: a rebuild that is not the same
    other.mkdir()
    _collected_like(synth, other / "hopper-medium.hdf5", seed=1)
    assert main(["datasets", "--root", str(other), "--expect", str(record)]) == 1
    out = capsys.readouterr().out
    differs = out.split("DIFFERS")[1]
    assert out.startswith("FAIL") and "sha256" in differs and "transitions" not in differs
    assert main(["datasets", "--root", str(other), "--expect", "None"]) == 0  # attrs only


def test_attrs_that_disagree_with_the_file_fail(tmp_path: Path, synth, capsys):
    _collected_like(synth, tmp_path / "x.hdf5", episodes_attr=7)
    assert main(["datasets", "--root", str(tmp_path), "--expect", "None"]) == 1
    assert "[attrs: MISMATCH (7 eps" in capsys.readouterr().out


def test_a_bad_record_is_a_clear_error(tmp_path: Path, synth, capsys):
    _collected_like(synth, tmp_path / "x.hdf5")
    bad = tmp_path / "record.json"
    bad.write_text("[1, 2]")
    assert main(["datasets", "--root", str(tmp_path), "--expect", str(bad)]) == 2
    assert "not a datasets record" in capsys.readouterr().err
