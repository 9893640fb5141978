"""What CPU this is, and how many threads a command should use on it.

Three facts decide how fast aaren-rl runs on a CPU, and all three are handled here:

- **Instruction sets.** bfloat16 training is native only with AVX512-BF16 or AMX-BF16
  (``aaren_policy.precision``); onnxruntime's int8 kernels take a VNNI path or AVX2's
  saturating one (``bench/agents.py``). :func:`cpu_record` is the dictionary every benchmark
  and results JSON carries, so a number is never read without the CPU it came from.
- **Other work on the machine.** PyTorch's OpenMP threads spin between parallel regions by
  default. With another busy process on a 2-core machine a spinning thread takes the core
  that process needs, and a DT training step went from 0.85 s to 4.1 s (AMD EPYC, AVX2).
  Two things prevent that: :func:`default_threads` leaves out the cores other processes keep
  busy when a run starts, and :func:`set_wait_policy` shortens OpenMP's spinning (it runs on
  ``import aaren_rl``, before torch loads its OpenMP runtime, which reads the variable once).
  ``aaren-bench threads`` measures both under 0, 1 and 2 busy processes (docs/benchmarks.md,
  "Threads under load").
- **Fresh memory.** glibc gives large blocks back to the kernel when they are freed, so a
  training step that frees and allocates the same tens of MB of activations every step
  touches fresh pages again each time: 10,000-16,000 page faults per demo step; keeping
  them made steps 2-23% faster in eight A/B pairs on the 2-core Zen 4.
  :func:`keep_freed_memory` (on ``import aaren_rl``) lets the process reuse its freed
  memory instead.

This module imports nothing heavy: it must run before torch.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

__all__ = [
    "CPU_FLAGS",
    "SPIN_COUNT",
    "cpu_flags",
    "cpu_record",
    "cpu_tag",
    "default_threads",
    "fp32_peak_gflops",
    "freed_memory_env",
    "freed_memory_kept",
    "keep_freed_memory",
    "others_busy_cores",
    "set_wait_policy",
    "threads_for",
]

CPU_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)
"""The instruction-set flags that change which kernels run (recorded in every benchmark)."""

CPUINFO = Path(os.environ.get("AAREN_RL_CPUINFO") or "/proc/cpuinfo")
"""Where the CPU's model and flags are read: /proc/cpuinfo, or the file ``AAREN_RL_CPUINFO``
names. Under an emulated CPU (``tools/emulate-avx2``: qemu-user passes the host's
/proc/cpuinfo through unchanged) the variable points at the emulated CPU's description, so
``auto`` precision and the benchmark records follow the CPU the kernels actually see."""


def _cpuinfo_fields(cpuinfo: Path) -> dict[str, str]:
    """The first processor's ``key: value`` lines of /proc/cpuinfo ({} where unreadable)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break  # the first processor's block is enough
            continue
        key, _, value = line.partition(":")
        out.setdefault(key.strip(), value.strip())
    return out


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    """Every flag the CPU reports (empty where /proc/cpuinfo cannot be read)."""
    return set(_cpuinfo_fields(cpuinfo).get("flags", "").split())


def cpu_record(cpuinfo: Path = CPUINFO) -> dict[str, Any]:
    """The CPU a number was measured on: model, cores available, the flags of
    :data:`CPU_FLAGS` (each true or false) and the training precision ``auto`` picks."""
    fields = _cpuinfo_fields(cpuinfo)
    flags = set(fields.get("flags", "").split())
    try:
        mhz = float(fields.get("cpu MHz", "nan"))
    except ValueError:
        mhz = float("nan")
    try:
        family = int(fields.get("cpu family", ""))
    except ValueError:
        family = None
    return {
        "model": fields.get("model name", "unknown"),
        "vendor": fields.get("vendor_id", "unknown"),
        "family": family,
        "cores": len(os.sched_getaffinity(0)),
        "mhz": mhz,
        "flags": {f: f in flags for f in CPU_FLAGS},
        "auto_precision": "bf16" if flags & {"avx512_bf16", "amx_bf16"} else "fp32",
    }


def cpu_tag(cpuinfo: Path = CPUINFO) -> str:
    """A folder name for this CPU: its model name in lower case, words joined by '-', then
    the widest vector path it has (``avx512-bf16``, ``avx512``, ``avx2``, ``sse``; on another
    architecture its name, e.g. ``aarch64``), e.g. ``amd-epyc-7b13-avx2`` for "AMD EPYC 7B13"
    (``make cpu-checks`` writes there)."""
    record = cpu_record(cpuinfo)
    flags = {f for f, on in record["flags"].items() if on}
    words = "".join(c if c.isalnum() else " " for c in record["model"].lower()).split()
    words = [w for w in words if w not in {"r", "tm", "processor", "cpu"}]
    if record["auto_precision"] == "bf16":
        path = "avx512-bf16"
    elif "avx512f" in flags:
        path = "avx512"
    elif "avx2" in flags:
        path = "avx2"
    else:  # an older x86 CPU, or another architecture (no x86 flags): name that
        path = {"x86_64": "sse", "AMD64": "sse"}.get(platform.machine(), platform.machine())
    return "-".join([*words, path.lower() or "unknown"])


def fp32_peak_gflops(record: dict[str, Any]) -> float:
    """One core's float32 peak, GFLOP/s: FMA lanes x 2 FMA units x 2 flops x the clock that
    /proc/cpuinfo reports (16 lanes with AVX-512, 8 with AVX2 + FMA, else 4 with SSE).

    An estimate: two FMA units is what Zen 3 / Zen 4 and Ice Lake / Sapphire Rapids server
    cores have. Zen 4 (AMD family 25) runs AVX-512 on 256-bit units, two passes per
    instruction, so it counts 8 lanes like AVX2; Zen 5 (family 26) has 512-bit units. A VM's
    ``cpu MHz`` is often the base clock, so a core that boosts runs faster than this and a
    fraction of this peak is an upper estimate. NaN where the clock is unknown.
    """
    flags = record["flags"]
    lanes = 16 if flags.get("avx512f") else 8 if flags.get("avx2") and flags.get("fma") else 4
    if lanes == 16 and record.get("vendor") == "AuthenticAMD" and (record.get("family") or 0) < 26:
        lanes = 8  # Zen 4: 512-bit instructions on 256-bit units
    return lanes * 2 * 2 * record["mhz"] / 1e3


SPIN_COUNT = "2000"
"""Busy-wait iterations of an idle OpenMP thread before it sleeps (libgomp's default: 300,000).

Short enough that a thread sharing its core with another busy process gives the core back
within microseconds, long enough to catch the next parallel region of a training step on an
idle machine (docs/benchmarks.md, "Threads under load", measured 0, 1000, 3000 and 300,000)."""


def set_wait_policy() -> None:
    """Short OpenMP spinning (``GOMP_SPINCOUNT``, :data:`SPIN_COUNT`) unless the user chose a
    policy (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` set) or torch is already loaded (its
    OpenMP runtime read the environment when it loaded)."""
    if "torch" in sys.modules:
        return
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT


MALLOC_KEEP_BYTES = 1 << 30
"""glibc's mmap and trim thresholds under :func:`keep_freed_memory` (1 GiB)."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_GLIBC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")  # glibc reads them at start
_freed_memory_kept = False


def freed_memory_kept() -> bool:
    """Whether :func:`keep_freed_memory` changed glibc's thresholds in this process
    (benchmark JSON records it beside the CPU)."""
    return _freed_memory_kept


def freed_memory_env() -> dict[str, str]:
    """Environment variables that give a child process that does not import aaren_rl (d3rlpy's
    DT in its own venv) the glibc thresholds this one has: empty unless
    :func:`keep_freed_memory` is in effect here, so both sides of a comparison get alike."""
    if not _freed_memory_kept:
        return {}
    return dict.fromkeys(_GLIBC_VARS, str(MALLOC_KEEP_BYTES))


def keep_freed_memory() -> bool:
    """Let this process reuse the memory it frees instead of giving it back to the kernel.

    glibc serves large blocks with mmap and unmaps them on free, and trims the heap's top
    when it frees; the next step's same-sized activations then fault every page in again.
    Raising both thresholds to :data:`MALLOC_KEEP_BYTES` keeps freed blocks for reuse: the
    process's memory stays at its peak instead of shrinking between steps. Only with glibc,
    and not when the user chose (``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``, or
    ``AAREN_RL_MALLOC=system`` for glibc's defaults). Returns whether it changed anything.
    docs/benchmarks.md, "Fresh memory", has the measurement.
    """
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    if os.environ.get("AAREN_RL_MALLOC") == "system":
        return False
    if any(v in os.environ for v in _GLIBC_VARS):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    global _freed_memory_kept
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MALLOC_KEEP_BYTES) == 1
    _freed_memory_kept = libc.mallopt(_M_TRIM_THRESHOLD, MALLOC_KEEP_BYTES) == 1 and ok
    return _freed_memory_kept


def _busy_jiffies(stat: Path) -> int | None:
    """Jiffies all CPUs spent working since boot (the ``cpu`` line of /proc/stat): user,
    nice, system, irq, softirq and steal (None where unreadable)."""
    try:
        with open(stat) as f:
            fields = f.readline().split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
    except (OSError, ValueError):
        return None
    return user + nice + system + irq + softirq + steal


def others_busy_cores(window: float = 0.25, stat: Path = Path("/proc/stat")) -> float:
    """How many cores other processes kept busy over the next ``window`` seconds (0.0 where
    /proc/stat cannot be read).

    Time this process spent is taken out. Niced processes count as much as any: with the
    kernel's autogroup scheduling (most desktop and server distributions) nice only ranks
    processes within one session, and a niced process of another session keeps a fair share
    of the core (measured here: nice-19 processes of other sessions took 1.6 of 2 cores next
    to two nice-0 busy loops).
    """
    hz = os.sysconf("SC_CLK_TCK")
    t0, own0, busy0 = time.monotonic(), _own_seconds(), _busy_jiffies(stat)
    time.sleep(window)
    t1, own1, busy1 = time.monotonic(), _own_seconds(), _busy_jiffies(stat)
    if busy0 is None or busy1 is None or t1 <= t0:
        return 0.0
    others = (busy1 - busy0) / hz - (own1 - own0)
    return max(0.0, others / (t1 - t0))


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


def threads_for(cores: int, busy: float) -> int:
    """Intra-op threads for ``cores`` usable cores while other processes keep ``busy`` cores
    busy (half a core or more counts as one): one thread per free core, at least one.

    A thread more than the free cores shares a core with a busy process, and every parallel
    region waits for it. With no core free, one thread still beats one per core: measured
    next to two busy processes of another session on 2 cores (docs/benchmarks.md, "Threads
    under load"), one thread ran 343-351 ms per step and was within 1.06x of the best setting
    in all three repeats, while two threads ranged from 279 to 439 ms: the kernel's autogroups
    share the CPU between sessions first, and two threads that are not running at the same
    moment wait for each other at every parallel region.
    """
    return max(1, cores - math.floor(busy + 0.5))


def default_threads(window: float = 0.25) -> int:
    """Intra-op threads when the user gives none: :func:`threads_for` the cores this process
    may use and the cores other processes keep busy right now.

    Chosen once, at the start of a run: the thread count changes float rounding (the last bit
    of a reduction), and a resumed run must repeat its steps bit for bit, so the trainer keeps
    it in its checkpoint. Load that arrives later meets short-spinning threads
    (:func:`set_wait_policy`), measured in docs/benchmarks.md.
    """
    return threads_for(len(os.sched_getaffinity(0)), others_busy_cores(window))
