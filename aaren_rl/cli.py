"""The one place where errors become messages and exit codes (see ``aaren_rl/errors.py``).

Every console script is ``run_cli(name, body)``: ``body`` parses its flags and does the work;
``run_cli`` turns what it raises into one line on stderr and the toolkit's exit code:

- :class:`~aaren_rl.errors.AarenError`: ``"{name}: error: {message}"``, exit 2;
- ``OSError`` (disk full, permission denied, a path that is a directory...): the path and what
  to do, exit 1 (the work failed; what was written before is intact: writes are atomic);
- ``KeyboardInterrupt``: ``"{name}: interrupted"`` plus the exception's notes, or else
  ``resume_hint`` if given, exit 130;
- SIGTERM (``kill``, systemd, Slurm, Kubernetes, Ray) is handled like Ctrl-C: while ``body``
  runs, it raises :class:`~aaren_rl.errors.Terminated` (a ``KeyboardInterrupt``), so the same
  clean-up runs; ``"{name}: terminated (SIGTERM)"`` plus the hint, exit 143. A second SIGTERM
  during the clean-up ends the process at once;
- ``SystemExit`` (tyro's ``--help`` and usage errors) passes through unchanged;
- notes added to an exception (``e.add_note``, e.g. "continue with --resume ...") are
  appended to its message on the same line;
- anything else is a bug: the traceback is printed, exit 1.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator

from aaren_rl.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    AarenError,
    ConfigError,
    Terminated,
)

__all__ = ["check_minimums", "describe_os_error", "run_cli", "sigterm_as_interrupt"]

_OS_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space and run the command again",
    errno.EDQUOT: "the disk quota is exceeded: free some space and run the command again",
    errno.EFBIG: "the file grew past the size limit (ulimit -f): raise it and run again",
    errno.EACCES: "permission denied: choose a path you can write to",
    errno.EPERM: "permission denied: choose a path you can write to",
    errno.EISDIR: "that path is a directory: give a file path",
    errno.ENOTDIR: "a part of that path is a file, not a directory: choose another path",
    errno.EROFS: "the file system is read-only: choose another path",
    errno.ENOENT: "no such file or directory: check the path",
}


def check_minimums(
    checks: Iterable[tuple[str, float, float]], error: type[AarenError] = ConfigError
) -> None:
    """Raise ``error`` naming the first ``(flag, value, minimum)`` whose value is too small."""
    for flag, value, low in checks:
        if value < low:
            raise error(f"{flag} must be >= {low}, got {value}")


def describe_os_error(e: OSError) -> str:
    """One line for an OSError: the path(s) involved, what happened and what to do."""
    paths = " -> ".join(str(p) for p in (e.filename, e.filename2) if p is not None)
    advice = _OS_ADVICE.get(e.errno or -1, e.strerror or str(e))
    return f"{paths}: {advice}" if paths else f"{advice} ({e})"


def _with_notes(message: str, e: BaseException) -> str:
    """The message plus the exception's notes (``e.add_note``: what to do next), one line."""
    return "; ".join([message, *getattr(e, "__notes__", ())])


def _on_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`~aaren_rl.errors.Terminated` in the main thread
    (outside the main thread, or where SIGTERM is ignored, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN:  # e.g. nohup-style launchers that ignore it on purpose
        yield
        return
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def run_cli(name: str, body: Callable[[], int | None], resume_hint: str | None = None) -> int:
    """Run a console script's ``body`` and map its outcome to an exit code."""
    try:
        with sigterm_as_interrupt():
            code = body()
    except AarenError as e:
        print(f"{name}: error: {_with_notes(str(e), e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        # An interrupt may carry its own hint as a note (e.g. the run directory to resume).
        hint = "; ".join(getattr(e, "__notes__", ())) or resume_hint
        what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        print(f"\n{name}: {what}{f'; {hint}' if hint else ''}", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED
    except OSError as e:
        print(f"{name}: error: {_with_notes(describe_os_error(e), e)}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK if code is None else int(code)
