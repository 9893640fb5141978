"""Atomic file writes: the one helper every writer of the toolkit uses.

A write goes to a temporary file in the destination's folder, is flushed and fsynced, and
only then takes the final name with ``os.replace`` (atomic on POSIX), after which the folder
itself is fsynced. A crash at any moment leaves either the old file or the new one, never a
half-written file. Directories are swapped the same way (:func:`atomic_directory`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_directory",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "fsync_tree",
    "recover_directory",
    "remove_stale_temporaries",
]


def fsync_dir(directory: str | Path) -> None:
    """fsync a directory, so that renames inside it survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(directory: str | Path) -> None:
    """fsync every file under ``directory``, then the directory itself."""
    directory = Path(directory)
    for f in directory.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(directory)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed to it.

    For writers that need a file name (h5py, onnx, safetensors). On an exception the temporary
    file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: give the usual file mode
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON (with a trailing newline) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def recover_directory(path: str | Path) -> None:
    """Finish a swap that a crash interrupted (see :func:`atomic_directory`).

    The swap renames ``path`` to ``.path.old`` and then the new version to ``path``; a crash
    between the two renames leaves only ``.path.old``, which is complete: move it back.
    """
    path = Path(path)
    old = path.parent / f".{path.name}.old"
    if not path.exists() and old.is_dir():
        os.replace(old, path)


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove temporaries that a killed writer of ``path`` left beside it; return them.

    Only names this module creates for ``path`` are touched (``.NAME.*.tmp`` files and
    ``.NAME.tmp-*`` folders), so nothing of the user's is ever removed.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    for p in path.parent.glob(f".{path.name}.*"):
        if p.is_dir() and p.name.startswith(f".{path.name}.tmp-"):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
        elif p.is_file() and p.name.endswith(".tmp"):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``path``.

    The files are fsynced, the old directory is moved aside, the new one renamed into place,
    and only then is the old one removed. At every moment one complete version exists on
    disk: ``path``, or (between the two renames) ``.path.old``, which ``recover_directory``
    (called by every reader) moves back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(path)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        yield tmp
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.parent / f".{path.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)
