"""Threads under load: the training step with each threading policy, next to 0..N busy processes.

A laptop or a shared VM rarely runs one thing. On a 2-core AMD EPYC (AVX2) with one other
busy process, a DT training step took 4.1 s with PyTorch's default threading and 0.85 s with
one thread: OpenMP's threads spin while they wait, and a spinning thread takes the core the
other process needs. This benchmark times the step (``aaren-bench train``'s step: K = 20,
batch 64, DT size, fp32 unless ``--precision``) in a fresh process per setting, because
OpenMP reads its wait policy once, when torch loads:

- ``default``: what ``aaren-train`` does when given no flag (``aaren_rl.cpu``): threads =
  the cores other processes leave free when the run starts, OpenMP spinning shortened to
  ``GOMP_SPINCOUNT=2000``;
- ``default-load-later``: the same, with the busy processes started only after the run chose
  its threads (load that arrives mid-run: the case the thread choice cannot see);
- ``threads-1``: ``--threads 1``;
- ``all-cores``: one thread per core, the short spin;
- ``all-cores-passive``: one thread per core, ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at
  once);
- ``all-cores-spin``: one thread per core with libgomp's own spinning
  (``GOMP_SPINCOUNT=300000``, its built-in default): PyTorch's behaviour before aaren-rl
  set a policy.

Each setting runs with ``loads`` busy processes beside it (pure-Python loops, one core each)
started before the step's process and stopped after it. Per load level, each setting's
median step is divided by the best setting's at that level (``vs best``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from aaren_rl.aaren_policy import BackboneConfig
from aaren_rl.bench.common import RESULTS, ModelSize

__all__ = ["SETTINGS", "ThreadsBenchConfig", "run_threads_bench", "threads_rows"]

Setting = Literal[
    "default",
    "default-load-later",
    "threads-1",
    "all-cores",
    "all-cores-passive",
    "all-cores-spin",
]
SETTINGS: tuple[str, ...] = typing.get_args(Setting)

BUSY = "while True: pass"


@dataclass
class ThreadsBenchConfig(ModelSize):
    """Settings of ``aaren-bench threads``."""

    loads: tuple[int, ...] = (0, 1, 2)
    """Busy background processes (each a pure-Python loop on one core) beside the step."""
    load_session: Literal["other", "same"] = "other"
    """Where the busy processes run: ``other``, in a session of their own (another program,
    as from a second terminal or a service: with the kernel's autogroup scheduling, the
    default on most distributions, CPU time is shared fairly between sessions first);
    ``same``, in this command's session (background jobs of one shell: shared per thread)."""
    settings: tuple[Setting, ...] = SETTINGS
    """Threading settings timed at every load level (see the module's docstring)."""
    backbones: tuple[Literal["aaren", "transformer"], ...] = ("aaren",)
    """Backbones timed."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Training precision (fp32: the path every CPU takes; bf16 is native only with
    AVX512-BF16 / AMX)."""
    context_length: int = 20
    """K (timesteps; 3K tokens)."""
    batch_size: int = 64
    """Sequences per step."""
    warmup: int = 2
    """Untimed steps after the first."""
    steps: int = 6
    """Timed steps per setting (median reported)."""
    repeats: int = 1
    """Times the whole grid is run (interleaved: each repeat visits every cell once)."""
    model: BackboneConfig = field(default_factory=BackboneConfig)
    """Backbone size (DT defaults: dim 128, 3 layers, dropout 0.1)."""
    out: Path = RESULTS / "threads"
    """Folder for threads.json."""

    def __post_init__(self) -> None:
        for name in ("context_length", "batch_size", "steps", "repeats"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be >= 0, got {self.warmup}")
        if not self.loads or min(self.loads) < 0 or max(self.loads) > 64:
            raise ValueError(f"--loads must be 0..64 busy processes, got {self.loads}")
        if not self.settings or not self.backbones:
            raise ValueError("--settings and --backbones must name at least one each")


def _env_and_threads(setting: str) -> tuple[dict[str, str], int | None]:
    """The environment and ``--threads`` of one setting (None: the command's default)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.pop("OMP_NUM_THREADS", None)
    cores = len(os.sched_getaffinity(0))
    if setting in ("default", "default-load-later"):
        return env, None
    if setting == "threads-1":
        return env, 1
    if setting == "all-cores":
        return env, cores
    if setting == "all-cores-passive":
        return {**env, "OMP_WAIT_POLICY": "PASSIVE"}, cores
    if setting == "all-cores-spin":
        return {**env, "GOMP_SPINCOUNT": "300000"}, cores
    raise ValueError(f"unknown setting {setting!r}; one of {SETTINGS}")


def _worker_args(cfg: ThreadsBenchConfig, backbone: str, threads: int | None) -> list[str]:
    spec = {
        "backbone": backbone,
        "threads": threads,
        "precision": cfg.precision,
        "k": cfg.context_length,
        "batch": cfg.batch_size,
        "warmup": cfg.warmup,
        "steps": cfg.steps,
        "model": asdict(cfg.model),
        "obs_dim": cfg.obs_dim,
        "act_dim": cfg.act_dim,
        "seed": cfg.seed,
    }
    return [sys.executable, "-m", "aaren_rl.bench.threads", json.dumps(spec)]


def _worker(spec: dict) -> dict:
    """Runs in the child: time the step, print one JSON line."""
    import aaren_rl  # noqa: F401  (sets the wait policy before torch loads, as every CLI does)
    from aaren_rl.cpu import default_threads

    threads = spec["threads"] if spec["threads"] is not None else default_threads()
    import torch

    torch.set_num_threads(threads)
    from aaren_rl.bench.train import TrainBenchConfig, _measure

    print("ready", flush=True)
    sys.stdin.readline()  # the parent starts the busy loops of default-load-later now
    cfg = TrainBenchConfig(
        model=BackboneConfig(**spec["model"]),
        obs_dim=spec["obs_dim"],
        act_dim=spec["act_dim"],
        seed=spec["seed"],
        warmup=spec["warmup"],
        steps=spec["steps"],
        threads=threads,
        compile=(),
        peer=False,
    )
    rec = _measure(spec["backbone"], spec["k"], spec["batch"], spec["precision"], False, cfg)
    return {
        "step_s_median": rec.step_s_median,
        "step_s_min": rec.step_s_min,
        "threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
    }


def _busy(n: int, session: str = "other") -> list[subprocess.Popen]:
    new = session == "other"
    procs = [
        subprocess.Popen([sys.executable, "-c", BUSY], start_new_session=new) for _ in range(n)
    ]
    time.sleep(0.2 if n else 0.0)  # let the loops start
    return procs


def _time_one(cfg: ThreadsBenchConfig, backbone: str, setting: str, load: int) -> dict:
    """Start the busy loops, then the timing process (``default-load-later``: the other way
    round, once the process has chosen its threads); one record."""
    env, threads = _env_and_threads(setting)
    later = setting == "default-load-later"
    busy = [] if later else _busy(load, cfg.load_session)
    try:
        worker = subprocess.Popen(
            _worker_args(cfg, backbone, threads),
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdout.readline()  # "ready": threads chosen, torch loaded
        if later:
            busy = _busy(load, cfg.load_session)
        out, err = worker.communicate("go\n")
    finally:
        for p in busy:
            p.kill()
            p.wait()
    if worker.returncode != 0:
        raise RuntimeError(f"the timing process failed ({setting}, load {load}):\n{err}")
    result = json.loads(out.strip().splitlines()[-1])
    return {
        "backbone": backbone,
        "setting": setting,
        "load": load,
        "load_session": cfg.load_session,
        **result,
    }


def run_threads_bench(cfg: ThreadsBenchConfig, log=print) -> list[dict]:
    """Every (backbone, load, setting) cell, ``repeats`` times; one record per cell (median
    over repeats of each repeat's median step)."""
    cells = [(b, n, s) for b in cfg.backbones for n in cfg.loads for s in cfg.settings]
    runs: dict[tuple, list[dict]] = {c: [] for c in cells}
    for r in range(cfg.repeats):
        for b, n, s in cells:
            rec = _time_one(cfg, b, s, n)
            runs[(b, n, s)].append(rec)
            log(
                f"[{r + 1}/{cfg.repeats}] {b} load {n} {s:15s} {rec['threads']} thread(s): "
                f"{rec['step_s_median'] * 1e3:.0f} ms/step"
            )
    records = []
    for recs in runs.values():
        med = statistics.median(x["step_s_median"] for x in recs)
        records.append(
            {**recs[0], "step_s_median": med, "repeats_s": [x["step_s_median"] for x in recs]}
        )
    for b in cfg.backbones:
        for n in cfg.loads:
            level = [x for x in records if x["backbone"] == b and x["load"] == n]
            best = min(x["step_s_median"] for x in level)
            for x in level:
                x["vs_best"] = x["step_s_median"] / best
    return records


def threads_rows(records: list[dict]) -> list[dict]:
    """Table rows: one per (backbone, load), one column per setting (ms, and x vs best)."""
    rows: dict[tuple, dict] = {}
    for x in records:
        row = rows.setdefault(
            (x["backbone"], x["load"]), {"backbone": x["backbone"], "load": x["load"]}
        )
        row[x["setting"]] = f"{x['step_s_median'] * 1e3:.0f} ({x['vs_best']:.2f}x)"
    return list(rows.values())


def threads_targets(records: list[dict]) -> list[dict]:
    """The issue's target: the default within 1.2x of the best setting at every load level."""
    out = []
    for x in records:
        if x["setting"] != "default":
            continue
        out.append(
            {
                "target": f"{x['backbone']}, {x['load']} busy: default <= 1.2x best",
                "measured": f"{x['vs_best']:.2f}x",
                "met": x["vs_best"] <= 1.2,
            }
        )
    return out


if __name__ == "__main__":
    print(json.dumps(_worker(json.loads(sys.argv[1]))))
