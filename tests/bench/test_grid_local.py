"""The local pool's workers end with the grid process, however it ends (bench/grid.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")

GRID = (
    "import time\n"
    "from aaren_rl.bench.grid import GridOptions, run_grid\n"
    "run_grid(time.sleep, [120], GridOptions(executor='local', num_cpus=1))\n"
)


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[1]) == pid:  # the field after the state is the parent's pid
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _pool_workers(pid: int, timeout: float = 60.0) -> list[int]:
    """The pool workers of process ``pid`` once one has started (empty after ``timeout``): its
    python children that are not the multiprocessing resource tracker (which ends with its
    parent anyway); in these tests each worker runs time.sleep(120)."""
    deadline, workers = time.monotonic() + timeout, []
    while not workers and time.monotonic() < deadline:
        time.sleep(0.2)
        workers = [
            k
            for k in _children(pid)
            if b"resource_tracker" not in Path(f"/proc/{k}/cmdline").read_bytes()
        ]
    return workers


def test_a_killed_grid_process_takes_its_running_workers_with_it() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    parent = subprocess.Popen([sys.executable, "-c", GRID], env=env)
    try:
        workers = _pool_workers(parent.pid)
        assert workers, "the pool started no worker"
        time.sleep(1.0)  # the worker has run its initializer and is in the task
        parent.send_signal(signal.SIGTERM)  # the grid process alone, as `kill` does
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "a worker outlived the grid process"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_sigterm_through_run_cli_stops_the_workers_at_once() -> None:
    """A console script turns SIGTERM into an interrupt (aaren_rl.cli.run_cli): the grid
    must not wait for its workers' runs to finish, and ends with exit 143."""
    script = (
        "import sys, time\n"
        "from aaren_rl.bench.grid import GridOptions, run_grid\n"
        "from aaren_rl.cli import run_cli\n"
        "sys.exit(run_cli('aaren-bench', lambda: run_grid(time.sleep, [120],"
        " GridOptions(executor='local', num_cpus=1)) and None))\n"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        workers = _pool_workers(parent.pid)
        assert workers, "the pool started no worker"
        time.sleep(1.0)
        parent.send_signal(signal.SIGTERM)
        _, err = parent.communicate(timeout=30)  # not the 120 s of the worker's task
        assert parent.returncode == 143, err
        assert "aaren-bench: terminated (SIGTERM)" in err and "Traceback" not in err
        deadline = time.monotonic() + 20
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "a worker outlived the grid process"
    finally:
        if parent.poll() is None:
            parent.kill()
