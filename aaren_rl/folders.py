"""The folder policy: how every command reads and writes the folders it manages.

Run directories, checkpoints and ``aaren-collect`` work dirs come from other people
(docs/security.md). A folder is opened through the path you typed (that path is trusted,
symlinks in it included); *inside* it, the toolkit holds the contents to three rules:

- **no way out through a symlink.** A symlink inside a managed folder must point inside it
  (W&B keeps ``latest-run`` and ``debug.log`` links in ``wandb/``); one that leads out, or
  dangles out, is refused before anything is read or written (:func:`check_folder`). The
  files the toolkit itself reads or appends to (``config.json``, ``metrics.jsonl``,
  checkpoint files, ``manifest.json``, rollouts...) may not be symlinks at all, nor sit
  under a folder that is one: every component below the folder is checked with
  ``os.lstat`` and the file is opened with ``O_NOFOLLOW`` (:func:`check_inside`,
  :func:`open_file`).
- **regular files only.** FIFOs, sockets and device files are refused (a FIFO would make a
  read block forever); files are opened with ``O_NONBLOCK`` and checked with ``fstat``
  before a byte is read, so even a FIFO swapped in after the check cannot hang a read.
- **sizes before reads.** :func:`read_bytes` refuses a file larger than the caller's cap
  before reading it.

Every refusal is the caller's error class (a subclass of :class:`aaren_rl.errors.AarenError`,
exit code 2) naming the path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, Any

from aaren_rl.errors import AarenError

__all__ = [
    "MAX_FOLDER_ENTRIES",
    "check_folder",
    "check_inside",
    "open_file",
    "read_bytes",
]

MAX_FOLDER_ENTRIES = 1_000_000  # entries walked in one managed folder (a run has < 1,000)

ErrorClass = type[AarenError]

_KIND = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFLNK: "a symlink",
    stat.S_IFDIR: "a directory",
}


def _kind(mode: int) -> str:
    return _KIND.get(stat.S_IFMT(mode), "not a regular file")


def _special(path: Path, mode: int, error: ErrorClass) -> AarenError:
    return error(
        f"{path} is {_kind(mode)}, not a regular file; files of a run, checkpoint or work "
        "dir must be plain files. Refusing to open it."
    )


def _outside(path: Path, target: Path, root: Path, error: ErrorClass) -> AarenError:
    return error(
        f"{path} is a symlink to {target}, outside {root}; nothing is read or written "
        "through links that leave the folder. Remove the link (or copy the file in)."
    )


def check_folder(root: str | Path, error: ErrorClass, shallow: tuple[str, ...] = ()) -> None:
    """Walk ``root`` (never following links); refuse special files and links that leave it.

    A symlink inside ``root`` must resolve (following every link in its chain) to a path
    inside ``root``; a dangling link counts by where it would point. ``root`` itself may be
    a symlink (you typed it). A missing ``root`` passes (the caller reports that).
    ``shallow``: folders (relative to ``root``) whose own entries are checked but whose
    subfolders are not entered: a tool's own run folders that this toolkit never reads or
    writes (W&B creates a new one on every start, with links to its cache outside the run).
    """
    root = Path(root)
    if not root.is_dir():
        return
    real_root = root.resolve()
    shallow_paths = {root / s for s in shallow}
    seen = 0
    stack = [(root, False)]
    while stack:
        folder, stop = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as e:
            raise error(f"{folder} cannot be listed ({e.strerror or e})") from e
        for entry in entries:
            seen += 1
            if seen > MAX_FOLDER_ENTRIES:
                raise error(f"{root} holds more than {MAX_FOLDER_ENTRIES} entries; refusing it")
            path = Path(entry.path)
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                target = path.resolve()
                if not target.is_relative_to(real_root):
                    raise _outside(path, target, root, error)
            elif stat.S_ISDIR(mode):
                if not stop:
                    stack.append((path, path in shallow_paths))
            elif not stat.S_ISREG(mode):
                raise _special(path, mode, error)


def check_inside(root: str | Path, path: str | Path, error: ErrorClass) -> Path:
    """``path`` (under ``root``) with no symlink at or below ``root``'s level; returns it.

    Every component from ``root`` down to ``path`` that exists must be a real directory
    (the last: a regular file or a directory); a missing tail is fine (it will be created
    inside). ``path`` may be given relative to ``root`` or starting with ``root``.
    """
    root, path = Path(root), Path(path)
    rel = path.relative_to(root) if path.is_relative_to(root) else path
    if rel.is_absolute() or ".." in rel.parts:
        raise error(f"{path} is not a path inside {root}")
    current = root
    for i, part in enumerate(rel.parts):
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return root / rel
        except OSError as e:
            raise error(f"{current} cannot be checked ({e.strerror or e})") from e
        last = i == len(rel.parts) - 1
        if stat.S_ISLNK(mode):
            raise error(
                f"{current} is a symlink (to {os.readlink(current)}); files inside {root} are "
                "never read or written through links. Replace the link with the file itself."
            )
        if not stat.S_ISDIR(mode) and not (last and stat.S_ISREG(mode)):
            raise _special(current, mode, error)
    return root / rel


def open_file(
    path: str | Path, error: ErrorClass, mode: str = "rb", root: str | Path | None = None
) -> IO[Any]:
    """Open a regular file (``"rb"`` read, ``"ab"``/``"a"`` append, created if missing).

    With ``root``, ``path`` is checked by :func:`check_inside` and opened with
    ``O_NOFOLLOW`` (a symlink fails to open); without, ``path`` is one you typed (links
    followed). Either way it is opened with ``O_NONBLOCK`` and must be a regular file
    (``fstat``), so a FIFO or device is refused instead of blocking.
    """
    path = Path(path)
    if root is not None:
        path = check_inside(root, path, error)
    flags = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if root is not None:
        flags |= getattr(os, "O_NOFOLLOW", 0)  # POSIX; the folder walk covers the rest
    if mode.startswith("a"):
        flags |= os.O_WRONLY | os.O_APPEND | os.O_CREAT
    elif mode.startswith("r"):
        flags |= os.O_RDONLY
    else:
        raise ValueError(f"open_file: mode {mode!r} (only r/a)")
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        raise error(f"{path} cannot be opened ({e.strerror or e})") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _special(path, st.st_mode, error)
        os.set_blocking(fd, True)  # a regular file: ordinary reads and writes from here
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def read_bytes(
    path: str | Path, error: ErrorClass, max_bytes: int, root: str | Path | None = None
) -> bytes:
    """The bytes of a regular file, refused (before reading) when larger than ``max_bytes``.

    ``root``: as :func:`open_file` (no symlinks below the folder).
    """
    with open_file(path, error, "rb", root) as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise error(f"{path}: {size} bytes, more than the {max_bytes} this file may have")
        data = f.read(size + 1)  # not max_bytes + 1: read() allocates what it is asked for
    if len(data) > size:
        raise error(f"{path} grew while it was read; read it again when it is complete")
    return data
