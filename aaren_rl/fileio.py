"""Atomic file writes: the one helper every writer of the toolkit uses.

A write goes to a temporary file in the destination's folder, is flushed and fsynced, and
only then takes the final name with ``os.replace`` (atomic on POSIX), after which the folder
itself is fsynced. A crash at any moment leaves either the old file or the new one, never a
half-written file. Directories are swapped the same way (:func:`atomic_directory`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from aaren_rl.errors import OutputPathError, RunDirError

__all__ = [
    "atomic_directory",
    "check_output_dir",
    "check_free_space",
    "check_output_file",
    "DirLock",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "fsync_tree",
    "recover_directory",
    "remove_stale_temporaries",
    "sha256_file",
    "written_by",
]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes, as ``sha256sum`` prints it (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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


def _make_parent(path: Path) -> None:
    """Create ``path``'s folder; a file in the way is reported as ENOTDIR on ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path)) from e


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
    _make_parent(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: give the usual file mode
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from e  # name the file it was for
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
    _make_parent(path)
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


# ---- checking output paths before any work starts ----------------------------------------


def _existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_can_create_in(directory: Path, flag: str, path: Path) -> None:
    """``directory`` exists: it must be a directory we can create a file in (tried, not guessed:
    ``os.access`` says yes to root on a read-only or special file system)."""
    if not directory.is_dir():
        raise OutputPathError(
            f"{flag} {path}: {directory} is a file, not a directory; choose another path"
        )
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".aaren-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputPathError(
            f"{flag} {path}: cannot write into {directory} ({e.strerror or e}); choose a "
            "path you can write to"
        ) from e


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _input_files(inputs: Iterable[str | Path]) -> Iterator[Path]:
    """The files of ``inputs``: a file itself, or every file under a directory."""
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            yield from (f for f in p.rglob("*") if f.is_file())
        elif p.exists():
            yield p


def _check_not_an_input(path: Path, st: os.stat_result, flag: str, inputs: Iterable) -> None:
    """Refuse ``path`` (existing) if it is one of the command's input files (same inode: a
    hard link or another name through symlinks counts) or lies inside an input folder."""
    for item in inputs:
        root = Path(item).expanduser()
        if root.is_dir() and path.resolve().is_relative_to(root.resolve()):
            raise OutputPathError(
                f"{flag} {path}: that file belongs to {root}, an input of this command; "
                "writing there would destroy it. Choose a path outside the input"
            )
    for f in _input_files(inputs):
        if _same_file(st, f.stat()):
            raise OutputPathError(
                f"{flag} {path}: that is {f}, an input of this command; writing there "
                "would destroy it. Choose another path"
            )


def check_output_file(
    path: str | Path,
    flag: str,
    *,
    inputs: Iterable[str | Path] = (),
    overwrite: bool = False,
    ours: Callable[[Path], bool] | None = None,
) -> Path:
    """Check, before any work starts, that ``path`` can be written as a file; return it.

    Nothing is created. ``flag`` names the option in messages (e.g. ``"--json"``). The one
    overwrite rule of every command (docs/reliability.md):

    - a symlink, FIFO, socket or device at ``path`` is never replaced (not even with
      ``overwrite``): writing would cut the link or block on the pipe;
    - an existing file that is one of ``inputs`` (the same inode, or inside an input folder)
      is never replaced: the command would destroy what it reads;
    - any other existing file is replaced only if ``ours(path)`` says this command wrote it
      (e.g. a JSON of an earlier ``aaren-eval``) or ``overwrite`` is set (``--overwrite``).

    Raises:
        OutputPathError: ``path`` is a directory, a part of it is a file, its folder cannot
            be written, or one of the rules above refuses it.
    """
    path = Path(path).expanduser()
    if path.is_symlink():
        raise OutputPathError(
            f"{flag} {path}: that is a symbolic link (to {os.readlink(path)}); it is never "
            "replaced. Give the real file's path, or another path"
        )
    if path.is_dir():
        raise OutputPathError(
            f"{flag} {path}: that is a directory; give a file path (e.g. {path / 'out.json'})"
        )
    if path.exists():
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise OutputPathError(
                f"{flag} {path}: that is a special file (a pipe, socket or device), not a "
                "regular file; it is never replaced. Choose another path"
            )
        _check_not_an_input(path, st, flag, inputs)
        if not os.access(path, os.W_OK):
            raise OutputPathError(f"{flag} {path}: the file is read-only; choose another path")
        if not overwrite and not (ours is not None and ours(path)):
            raise OutputPathError(
                f"{flag} {path}: the file exists and this command did not write it; pass "
                "--overwrite to replace it, or choose another path"
            )
    _check_can_create_in(_existing_ancestor(path.parent), flag, path)
    return path


def written_by(path: Path, marker: bytes, max_bytes: int = 64 * 2**20) -> bool:
    """Whether ``path`` (at most ``max_bytes``) holds ``marker``: a cheap test that a file
    is one this toolkit wrote (e.g. ONNX metadata ``aaren.format``), used by ``ours``."""
    try:
        if path.stat().st_size > max_bytes:
            return False
        with open(path, "rb") as f:
            return marker in f.read(max_bytes)
    except OSError:
        return False


def check_free_space(path: str | Path, needed: int, what: str) -> None:
    """Refuse, before writing, ``needed`` bytes into ``path``'s file system when it has fewer
    free: one message naming the folder and both sizes, instead of a write that fails midway.

    Raises:
        OSError: ENOSPC naming ``path`` (exit 1: a failure of the machine, not of the input).
    """
    where = _existing_ancestor(Path(path).expanduser())
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return  # cannot tell: the write itself will say
    if needed > free:
        err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        err.add_note(f"{what} needs about {needed / 2**20:,.0f} MiB, {free / 2**20:,.0f} MiB free")
        raise err


def check_output_dir(path: str | Path, flag: str) -> Path:
    """Check, before any work starts, that ``path`` is (or can become) a writable directory.

    Nothing is created. ``flag`` names the option in messages (e.g. ``"--run-dir"``).

    Raises:
        OutputPathError: ``path`` is a file, a part of it is a file, or it cannot be written.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputPathError(
            f"{flag} {path}: that is a file, not a directory; choose a directory path"
        )
    _check_can_create_in(_existing_ancestor(path), flag, path)
    return path


# ---- one process per run or work directory -----------------------------------------------


class DirLock:
    """An exclusive lock on a run or work directory, held while one command uses it.

    The lock is ``fcntl.flock`` on a hidden file beside the directory (``.NAME.lock``: the
    directory itself may not exist yet, and two new runs must not race to create it). The
    kernel drops a flock when its process dies, so a lock left by a killed process (kill -9,
    out of memory, power cut) never blocks the next command. The holder writes its PID into
    the file so that a second command can say who holds it. :meth:`release` removes the file.

    Raises (from :meth:`acquire`):
        RunDirError: another live process holds the lock ("in use by PID N").
    """

    def __init__(self, directory: str | Path, what: str) -> None:
        self.directory = Path(directory).expanduser()
        self.path = self.directory.parent / f".{self.directory.name}.lock"
        self.what = what  # e.g. "--run-dir": named in the message
        self._fd: int | None = None

    def acquire(self) -> DirLock:
        """Take the lock (creating the directory's parent folders); where no lock file can be
        made (a part of the path is a file...), do nothing and leave the refusal to the
        command's own check of the directory."""
        import fcntl

        try:
            _make_parent(self.directory)
        except OSError:
            return self
        while True:  # retry if the file we locked was removed by its previous holder
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError:  # a read-only folder, a symlink planted at the lock's name...
                return self
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder(fd)
                os.close(fd)
                raise RunDirError(
                    f"{self.what} {self.directory} is in use by {holder}: two commands must "
                    "not write one directory. Wait for it to finish (or stop it), then run "
                    "again; or choose another directory"
                ) from None
            try:
                same = _same_file(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return f"PID {text}" if text.isdigit() else "another process"

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # while still holding it: see the retry in acquire
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
