"""The folder policy (aaren_rl/folders.py) and the capped JSON and zip readers (untrusted.py)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from aaren_rl.errors import RunDirError
from aaren_rl.folders import check_folder, check_inside, open_file, read_bytes
from aaren_rl.untrusted import MAX_JSON_DEPTH, check_zip, parse_json_text, read_json


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "run"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.json").write_text("{}")
    return root


def test_a_clean_folder_and_links_that_stay_inside_pass(folder: Path):
    (folder / "latest").symlink_to("sub")  # as W&B's latest-run
    check_folder(folder, RunDirError)
    assert check_inside(folder, folder / "sub" / "a.json", RunDirError) == folder / "sub/a.json"


@pytest.mark.parametrize("dangling", [False, True])
def test_a_link_out_of_the_folder_is_refused(folder: Path, tmp_path: Path, dangling: bool):
    target = tmp_path / "outside.txt"
    if not dangling:
        target.write_text("secret")
    (folder / "sub" / "metrics.jsonl").symlink_to(target)
    with pytest.raises(RunDirError, match=r"metrics\.jsonl is a symlink to .*outside"):
        check_folder(folder, RunDirError)
    with pytest.raises(RunDirError, match="is a symlink"):
        open_file(folder / "sub" / "metrics.jsonl", RunDirError, "ab", root=folder)
    assert target.exists() != dangling  # nothing created or written outside


def test_a_shallow_folder_is_checked_one_level_deep(folder: Path, tmp_path: Path):
    logs = folder / "wandb" / "offline-run-1" / "logs"
    logs.mkdir(parents=True)
    (logs / "debug-core.log").symlink_to(tmp_path / "cache.log")  # as W&B links its cache
    check_folder(folder, RunDirError, shallow=("wandb",))
    with pytest.raises(RunDirError, match="debug-core.log is a symlink"):
        check_folder(folder, RunDirError)
    (folder / "wandb" / "debug.log").symlink_to(tmp_path / "cache.log")
    with pytest.raises(RunDirError, match=r"wandb/debug\.log is a symlink"):
        check_folder(folder, RunDirError, shallow=("wandb",))


def test_a_link_to_a_folder_inside_is_not_opened_through(folder: Path):
    (folder / "rollouts").symlink_to("sub")
    with pytest.raises(RunDirError, match="rollouts is a symlink"):
        read_bytes(folder / "rollouts" / "a.json", RunDirError, 100, root=folder)


@pytest.fixture
def alarm():
    """Fail (instead of hanging) if the test blocks for 20 s: a FIFO opened for reading."""
    import signal

    def fail(*_):
        raise TimeoutError("blocked on a FIFO")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_a_fifo_is_refused_without_blocking(folder: Path, alarm):
    fifo = folder / "sub" / "manifest.json"
    os.mkfifo(fifo)
    with pytest.raises(RunDirError, match="FIFO"):
        check_folder(folder, RunDirError)
    with pytest.raises(RunDirError, match="FIFO"):  # no writer: a blocking open would hang
        read_json(fifo, RunDirError, root=folder)
    with pytest.raises(RunDirError, match="FIFO"):
        read_json(fifo, RunDirError)  # a path you typed: links followed, FIFOs still refused


def test_size_is_checked_before_reading(folder: Path):
    (folder / "big.json").write_bytes(b" " * 2000)
    with pytest.raises(RunDirError, match="2000 bytes, more than the 1000"):
        read_json(folder / "big.json", RunDirError, max_bytes=1000, root=folder)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_deep_json_is_one_clear_error(depth: int):
    text = "[" * depth + "]" * depth
    with pytest.raises(RunDirError, match=f"nested deeper than the {MAX_JSON_DEPTH} levels"):
        parse_json_text(text, "x.json", RunDirError)
    assert parse_json_text("[" * 10 + "]" * 10, "x.json", RunDirError) is not None


def test_a_zip_bomb_entry_is_refused_before_decompressing(tmp_path: Path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("data", b"\0" * 50_000_000)  # 50 MB of zeros: ~50 kB compressed
    with pytest.raises(RunDirError, match="unpacks to 50000000 bytes, more than the"):
        check_zip(bomb, str(bomb), RunDirError, max_bytes=10_000_000)
    # a declared size far beyond the compressed size (a forged header) is a bomb whatever the cap
    info = zipfile.ZipFile(bomb).infolist()[0]
    assert info.file_size <= info.compress_size * 1100
    forged = bytearray(bomb.read_bytes())
    for offset in (22, forged.rfind(b"PK\x01\x02") + 24):  # local header, central directory
        forged[offset : offset + 4] = (2**32 - 1).to_bytes(4, "little")
    (tmp_path / "forged.zip").write_bytes(bytes(forged))
    with pytest.raises(RunDirError, match="a zip bomb|not a readable zip"):
        check_zip(tmp_path / "forged.zip", "forged.zip", RunDirError, max_bytes=2**40)


def test_json_written_by_the_toolkit_reads_back(folder: Path):
    doc = {"a": [1, {"b": [2, 3]}], "c": "d"}
    (folder / "doc.json").write_text(json.dumps(doc))
    assert read_json(folder / "doc.json", RunDirError, root=folder) == doc
