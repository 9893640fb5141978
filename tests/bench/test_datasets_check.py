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


def test_attrs_that_disagree_with_the_file_fail_naming_them(tmp_path: Path, synth, capsys):
    _collected_like(synth, tmp_path / "x.hdf5", episodes_attr=7)
    assert main(["datasets", "--root", str(tmp_path), "--expect", "None"]) == 1
    assert "[attrs: MISMATCH (attr vs file: episodes 7 vs 4)]" in capsys.readouterr().out
    arrays = synth.arrays((5, 6), (True, True))  # only a wrong transitions attr
    synth.write(tmp_path / "x.hdf5", arrays, env_id="Hopper-v5", transitions=99)
    assert main(["datasets", "--root", str(tmp_path), "--expect", "None"]) == 1
    assert "MISMATCH (attr vs file: transitions 99 vs 11)" in capsys.readouterr().out


def test_attrs_may_count_only_the_episodes_that_ended(tmp_path: Path, synth, capsys):
    """Some D4RL-style files leave the recording's cut last episode out of their attrs."""
    arrays = synth.arrays((5, 6), (True, True), trailing=3, rewards="uniform")
    ends = np.array([5, 11])
    natural = np.add.reduceat(arrays["rewards"][:11], np.concatenate([[0], ends[:-1]]))
    synth.write(tmp_path / "x.hdf5", arrays, episodes=2, episode_return_mean=natural.mean())
    assert main(["datasets", "--root", str(tmp_path), "--expect", "None"]) == 0
    out = capsys.readouterr().out
    assert "[attrs: ok (natural ends)]" in out and "normalised -" in out  # no env: no score


def test_record_files_missing_here_are_named(tmp_path: Path, synth, capsys):
    _collected_like(synth, tmp_path / "a.hdf5")
    record = tmp_path / "record.json"
    assert main(["datasets", "--root", str(tmp_path), "--expect", "None",
                 "--write-record", str(record)]) == 0  # fmt: skip
    rows = json.loads(record.read_text())
    rows["files"]["b.hdf5"] = rows["files"]["a.hdf5"]
    record.write_text(json.dumps(rows))
    capsys.readouterr()
    assert main(["datasets", "--root", str(tmp_path), "--expect", str(record)]) == 0
    assert f"1 of the record's 2 files here and identical; not in {tmp_path}: b.hdf5" in (
        capsys.readouterr().out
    )


def test_a_bad_or_missing_record_is_a_clear_error(tmp_path: Path, synth, capsys):
    _collected_like(synth, tmp_path / "x.hdf5")
    bad = tmp_path / "record.json"
    for text, says in [("[1, 2]", "not a datasets record"), ('{"files": {"x.hdf5": 5}}',
                       "rows without a sha256 for x.hdf5")]:  # fmt: skip
        bad.write_text(text)
        assert main(["datasets", "--root", str(tmp_path), "--expect", str(bad)]) == 2
        assert says in capsys.readouterr().err
    typo = tmp_path / "recrod.json"  # a record that is not there is not "no differences"
    assert main(["datasets", "--root", str(tmp_path), "--expect", str(typo)]) == 2
    assert f"the record {typo} does not exist" in capsys.readouterr().err
