"""aaren-collect with a work dir someone else crafted: nothing written or read outside it, no
FIFO waited on, no zip bomb decompressed (docs/security.md)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest

from aaren_rl.collect.collect import main
from aaren_rl.collect.workdir import Manifest, load_npz, load_sb3_model
from aaren_rl.errors import RunDirError


def _collect(work: Path, capsys) -> tuple[int, str]:
    signal.alarm(60)  # a FIFO read would block for ever: fail instead
    try:
        rc = main(["--env", "hopper", "--num-envs", "1", "--work-dir", str(work)])
    finally:
        signal.alarm(0)
    captured = capsys.readouterr()
    return rc, captured.err + captured.out


def test_rollouts_linked_out_of_the_work_dir_are_refused(tmp_path: Path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "random_step-1_n1000000.npz"
    victim.write_bytes(b"keep me")
    work = tmp_path / "work"
    work.mkdir()
    (work / "rollouts").symlink_to(outside)
    rc, out = _collect(work, capsys)
    assert rc == 2 and "rollouts is a symlink to" in out, out
    assert victim.read_bytes() == b"keep me" and sorted(outside.iterdir()) == [victim]


def test_manifest_json_as_a_fifo_is_refused_in_seconds(tmp_path: Path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    os.mkfifo(work / "manifest.json")
    rc, out = _collect(work, capsys)
    assert rc == 2 and "FIFO" in out, out


@pytest.mark.parametrize("where", ["outside", "inside"])
def test_a_rollouts_file_linked_elsewhere_is_refused_without_hashing(tmp_path: Path, where):
    target = Path("/etc/hostname") if where == "outside" else tmp_path / "ckpt" / "other.npz"
    if not target.is_file():
        target = tmp_path / "ckpt" / "other.npz"
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "other.npz").write_bytes(b"x")
    (tmp_path / "rollouts").mkdir()
    link = tmp_path / "rollouts" / "expert.npz"
    link.symlink_to(target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    files = {"rollouts/expert.npz": digest}
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1, "files": files}))
    with pytest.raises(RunDirError, match="symlink") as e:
        Manifest(tmp_path).verified("rollouts/expert.npz")
    assert digest[:12] not in str(e.value)


def test_an_npz_with_compressed_entries_is_refused(tmp_path: Path):
    buf = io.BytesIO()
    np.save(buf, np.zeros(5_000_000, np.float64))  # 40 MB that deflate packs into ~40 kB
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("observations.npy", buf.getvalue())
    assert bomb.stat().st_size < 200_000
    with pytest.raises(RunDirError, match="compressed entries"):
        load_npz(bomb)


def test_an_npy_header_larger_than_its_entry_is_refused(tmp_path: Path):
    from numpy.lib import format as npy

    buf = io.BytesIO()
    npy.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (90_000_000_000,)}
    )
    fake = tmp_path / "fake.npz"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("a.npy", buf.getvalue() + bytes(16))  # 16 bytes of data
    with pytest.raises(RunDirError, match=r"declares a \(90000000000,\) float32 array"):
        load_npz(fake)


def test_an_sb3_data_entry_bomb_is_refused_before_decompressing(tmp_path: Path):
    bomb = tmp_path / "model.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("data", b"{" + b" " * 60_000_000 + b"}")  # 60 MB of JSON in ~60 kB
    with pytest.raises(RunDirError, match="entry 'data' is larger than"):
        load_sb3_model(object, bomb, fresh=None)
