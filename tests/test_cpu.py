"""aaren_rl.cpu: the CPU record every benchmark JSON carries, and the threading defaults."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from aaren_rl.cpu import (
    CPU_FLAGS,
    SPIN_COUNT,
    cpu_flags,
    cpu_record,
    cpu_tag,
    default_threads,
    fp32_peak_gflops,
    keep_freed_memory,
    others_busy_cores,
    threads_for,
)

AVX2_ZEN3 = (
    "processor\t: 0\nmodel name\t: AMD EPYC 7B13\n"
    "flags\t\t: fpu sse2 avx fma avx2 bmi2\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
)
SAPPHIRE = (
    "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
    "flags\t\t: avx2 fma avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8\n"
)


def test_cpu_record_names_the_model_and_every_flag(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(AVX2_ZEN3)
    rec = cpu_record(info)
    assert rec["model"] == "AMD EPYC 7B13"
    assert set(rec["flags"]) == set(CPU_FLAGS)
    assert rec["flags"]["avx2"] and rec["flags"]["fma"]
    assert not any(rec["flags"][f] for f in ("avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16"))
    assert rec["auto_precision"] == "fp32"
    assert rec["cores"] == len(os.sched_getaffinity(0))
    info.write_text(SAPPHIRE)
    rec = cpu_record(info)
    assert rec["flags"]["avx512_bf16"] and rec["flags"]["amx_int8"] and not rec["flags"]["avx_vnni"]
    assert rec["auto_precision"] == "bf16"


def test_cpu_tag_names_the_model_and_its_widest_vector_path(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(AVX2_ZEN3)
    assert cpu_tag(info) == "amd-epyc-7b13-avx2"
    info.write_text(SAPPHIRE)
    assert cpu_tag(info) == "intel-xeon-platinum-8480-avx512-bf16"
    info.write_text(SAPPHIRE.replace("avx512_bf16 amx_tile amx_bf16", "amx_tile"))
    assert cpu_tag(info).endswith("-avx512")
    if platform.machine() == "x86_64":
        assert cpu_tag(tmp_path / "missing") == "unknown-sse"


def test_fp32_peak_counts_the_vector_units_a_core_has(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    mhz = "cpu MHz\t\t: 2500.000\n"
    info.write_text("vendor_id\t: AuthenticAMD\ncpu family\t: 25\n" + mhz + AVX2_ZEN3)
    assert fp32_peak_gflops(cpu_record(info)) == pytest.approx(8 * 2 * 2 * 2.5)  # AVX2
    zen4 = "vendor_id\t: AuthenticAMD\ncpu family\t: 25\n" + mhz + "model name\t: AMD EPYC\n"
    info.write_text(zen4 + "flags\t\t: avx2 fma avx512f avx512_bf16\n")
    rec = cpu_record(info)
    assert (rec["vendor"], rec["family"]) == ("AuthenticAMD", 25)
    assert fp32_peak_gflops(rec) == pytest.approx(8 * 2 * 2 * 2.5)  # 512 bits on 256-bit units
    info.write_text(
        zen4.replace("family\t: 25", "family\t: 26") + "flags\t\t: avx2 fma avx512f\n"
    )  # Zen 5
    assert fp32_peak_gflops(cpu_record(info)) == pytest.approx(16 * 2 * 2 * 2.5)
    info.write_text("vendor_id\t: GenuineIntel\ncpu family\t: 6\n" + mhz + SAPPHIRE)
    assert fp32_peak_gflops(cpu_record(info)) == pytest.approx(16 * 2 * 2 * 2.5)


def test_cpu_record_without_cpuinfo(tmp_path: Path) -> None:
    rec = cpu_record(tmp_path / "missing")
    assert rec["model"] == "unknown" and not any(rec["flags"].values())
    assert cpu_flags(tmp_path / "missing") == set()


def _spin_env(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = "import aaren_rl, os; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_importing_aaren_rl_shortens_openmp_spinning_unless_the_user_chose() -> None:
    assert _spin_env() == f"{SPIN_COUNT} None"
    assert _spin_env(OMP_WAIT_POLICY="ACTIVE") == "None ACTIVE"
    assert _spin_env(GOMP_SPINCOUNT="5") == "5 None"


def test_set_wait_policy_changes_nothing_once_torch_is_loaded() -> None:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = "import torch, aaren_rl, os; print(os.environ.get('GOMP_SPINCOUNT'))"
    out = subprocess.run([sys.executable, "-c", code], env=base, capture_output=True, text=True)
    assert out.stdout.strip() == "None"


GLIBC = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"

# A step's pattern: activations alive together, a larger temporary freed in between.
_FAULTS_OF_A_STEP = """
import resource, numpy as np, aaren_rl
def faults(): return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():
    keep = [np.ones(3 << 20), np.ones(1 << 20)]
    tmp = np.ones(6 << 20); del tmp
    keep.append(np.ones(3 << 20)); del keep
for _ in range(3): step()
f = faults(); step(); print(faults() - f)
"""


def _faults_of_a_step(**env: str) -> int:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "AAREN_RL_MALLOC"))}
    out = subprocess.run([sys.executable, "-c", _FAULTS_OF_A_STEP], env={**base, **env},
                         capture_output=True, text=True, check=True)  # fmt: skip
    return int(out.stdout)


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_importing_aaren_rl_reuses_freed_memory_instead_of_faulting_it_in_again() -> None:
    """The fourth step of the same allocations touches no fresh page once aaren_rl is
    imported; with glibc's defaults its 48 MiB temporary is mapped afresh every time."""
    assert _faults_of_a_step() < 100
    assert _faults_of_a_step(AAREN_RL_MALLOC="system") > 1000


def test_keep_freed_memory_leaves_the_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AAREN_RL_MALLOC", "system")
    assert keep_freed_memory() is False
    monkeypatch.delenv("AAREN_RL_MALLOC")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    assert keep_freed_memory() is GLIBC


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores to leave one free")
def test_threads_for_takes_the_free_cores_and_one_thread_when_none_is_free() -> None:
    assert threads_for(2, 0.0) == 2
    assert threads_for(2, 0.4) == 2  # under half a core: not counted
    assert threads_for(2, 1.0) == 1  # one busy process: the free core only
    assert threads_for(2, 1.6) == 1  # no core free: one thread (docs/benchmarks.md)
    assert threads_for(2, 3.0) == 1
    assert threads_for(8, 3.0) == 5
    assert threads_for(8, 7.4) == 1
    assert threads_for(1, 2.0) == 1


def test_default_threads_leaves_out_the_cores_busy_processes_keep() -> None:
    cores = len(os.sched_getaffinity(0))
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        import time

        time.sleep(0.3)
        assert others_busy_cores(0.5) >= 0.5 * cores  # every core had a busy loop
        assert 1 <= default_threads(0.5) <= cores
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert 1 <= default_threads(0.1) <= cores
