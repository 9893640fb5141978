"""Run a grid of independent tasks: as Ray tasks (default), or in a local process pool.

Every grid of runs the benchmarks launch (``aaren-bench returns``) goes through
:func:`run_grid`. A task is a picklable top-level function applied to one item; it must be
resumable on its own (skip what is done, continue from its checkpoint), so a grid stopped at
any point and started again does only what is left.

Executors:

- ``ray`` (default): ``ray.init()`` on this machine (every CPU unless ``num_cpus``), or
  ``address`` to join an existing cluster (``ray start --head`` / a cloud cluster). Each task
  asks for one CPU (and runs one torch thread) and, when the cluster has GPUs and the grid
  wants them, a *fraction* of a GPU (``gpu_per_task``, e.g. 1/16: sixteen runs share one
  device). Ray is an optional extra: ``pip install 'aaren-rl[ray]'``.
- ``local``: a ``concurrent.futures`` process pool of ``jobs`` processes on this machine,
  every process on the same device. For machines where Ray cannot be installed (an offline
  GPU box that gets its packages as wheels: Ray's wheel alone is ~80 MB).

A task that raises does not stop the others: its error comes back as a failure line.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aaren_rl.errors import ConfigError, DependencyNotInstalled

__all__ = ["GridOptions", "RAY_HINT", "run_grid"]

RAY_HINT = (
    "the grid runs on Ray, which is not installed: pip install 'aaren-rl[ray]' "
    "(or pass --executor local for a process pool on this machine)"
)


@dataclass(frozen=True)
class GridOptions:
    """How a grid is executed (the flags every grid command shares)."""

    executor: Literal["ray", "local"] = "ray"
    address: str | None = None
    """Ray cluster to join (``auto``, ``ray://host:10001``); None starts Ray on this machine."""
    num_cpus: int | None = None
    """CPUs of the local Ray instance / processes of the local pool (default: all CPUs)."""
    gpu_per_task: float = 1 / 16
    """Fraction of a GPU each task asks for, when there are GPUs and the grid uses them."""
    use_gpu: bool = True
    """Ask for GPUs at all (False: CPU-only tasks even on a GPU machine)."""

    def __post_init__(self) -> None:
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ConfigError(f"--num-cpus must be >= 1, got {self.num_cpus}")
        if not 0 < self.gpu_per_task <= 1:
            raise ConfigError(f"--gpu-per-run must be in (0, 1], got {self.gpu_per_task}")
        if self.executor == "local" and self.address is not None:
            raise ConfigError("--address joins a Ray cluster: it needs --executor ray")


def _guarded(fn: Callable[[Any], str], item: Any) -> str:
    """Run one task; an exception becomes a ``FAILED`` line (the grid goes on)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        return fn(item)
    except Exception as e:  # keep the other runs going; reported at the end
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        return f"FAILED {getattr(item, 'name', item)}: {last}"


def _die_with_parent(parent: int) -> None:
    """Pool worker initializer: end this worker when the grid process ends, however it ends.

    Ctrl-C reaches every process of the terminal's group, but a ``kill`` (SIGTERM) or an
    out-of-memory kill of the grid process reaches it alone; its workers would otherwise
    train on unseen and write their results. Linux: ``PR_SET_PDEATHSIG`` sends this worker
    SIGTERM when its parent dies (a run's checkpoints are atomic, so it resumes).
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _run_ray(fn: Callable[[Any], str], items: Sequence[Any], opts: GridOptions) -> list[str]:
    try:
        import ray
    except ImportError:
        raise DependencyNotInstalled(RAY_HINT) from None
    started = not ray.is_initialized()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline machines: no phoning home
    if started:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
        if opts.address is None:
            kwargs["num_cpus"] = opts.num_cpus or os.cpu_count()
        ray.init(address=opts.address, **kwargs)
    try:
        gpus = ray.cluster_resources().get("GPU", 0.0) if opts.use_gpu else 0.0
        # max_calls=1: a fresh worker process per run (memory and CUDA state do not carry over)
        need = {"num_cpus": 1, "num_gpus": opts.gpu_per_task if gpus else 0}
        task = ray.remote(**need, max_retries=0, max_calls=1)(_guarded)
        _log(
            f"Ray: {ray.cluster_resources().get('CPU', 0):.0f} CPUs, {gpus:g} GPUs; "
            f"{len(items)} tasks, 1 CPU"
            + (f" + {opts.gpu_per_task:g} GPU" if gpus else "")
            + " each"
        )
        pending = [task.remote(fn, item) for item in items]
        out = []
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            msg = ray.get(done[0])
            _log(msg)
            out.append(msg)
        return out
    finally:
        if started:
            ray.shutdown()


def _run_local(fn: Callable[[Any], str], items: Sequence[Any], opts: GridOptions) -> list[str]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    jobs = min(opts.num_cpus or os.cpu_count() or 1, len(items))
    _log(f"local pool: {jobs} processes; {len(items)} tasks")
    out = []
    # spawn: CUDA cannot be used in forked children; one task per process keeps memory flat.
    kwargs: dict[str, Any] = {
        "mp_context": mp.get_context("spawn"),
        "initializer": _die_with_parent,
        "initargs": (os.getpid(),),
    }
    if sys.version_info >= (3, 11):
        kwargs["max_tasks_per_child"] = 1
    ex = ProcessPoolExecutor(jobs, **kwargs)
    try:
        futures = [ex.submit(_guarded, fn, item) for item in items]
        for f in as_completed(futures):
            _log(f.result())
            out.append(f.result())
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM turned into one by run_cli: stop the
        # workers now (leaving the `with` block would wait for their runs to finish)
        for worker in list((getattr(ex, "_processes", None) or {}).values()):
            worker.terminate()
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    ex.shutdown()
    return out


def run_grid(fn: Callable[[Any], str], items: Sequence[Any], opts: GridOptions) -> list[str]:
    """Apply ``fn`` to every item (in parallel); returns the failure lines (empty: all ok).

    Args:
        fn: a top-level function (it is pickled) returning a one-line status.
        items: the tasks' inputs (picklable; an ``item.name`` labels its failure line).
        opts: the executor and its resources.

    Raises:
        DependencyNotInstalled: ``executor="ray"`` without Ray installed.
    """
    if not items:
        return []
    runner = _run_ray if opts.executor == "ray" else _run_local
    return [m for m in runner(fn, items, opts) if m.startswith("FAILED")]
