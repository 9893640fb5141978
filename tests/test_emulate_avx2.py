"""tools/emulate-avx2 runs Python on an AVX2-only CPU (qemu-user), children included, and points
aaren_rl.cpu at that CPU's description. Skipped where qemu-user is not installed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "emulate-avx2"

PROBE = """
import json, subprocess, sys, torch
from aaren_rl.cpu import cpu_record
child = subprocess.run([sys.executable, "-c",
    "import torch; print(torch.backends.cpu.get_cpu_capability())"],
    capture_output=True, text=True, check=True).stdout.strip()
print(json.dumps({"torch": torch.backends.cpu.get_cpu_capability(), "child": child,
                  "cpu": cpu_record()}))
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="qemu-user is not installed")
def test_emulated_cpu_is_avx2_only_for_torch_children_and_aaren_rl() -> None:
    out = subprocess.run(
        [str(TOOL), sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["torch"] == "AVX2" and got["child"] == "AVX2"
    flags = got["cpu"]["flags"]
    assert flags["avx2"] and flags["fma"]
    assert not any(flags[f] for f in flags if f.startswith(("avx512", "amx", "avx_vnni")))
    assert got["cpu"]["auto_precision"] == "fp32"
    assert got["cpu"]["model"].startswith("emulated AVX2-only CPU")


def test_emulate_avx2_explains_its_usage() -> None:
    out = subprocess.run([str(TOOL)], capture_output=True, text=True)
    assert out.returncode == 2 and "usage: tools/emulate-avx2" in out.stderr
