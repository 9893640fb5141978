"""aaren-bench train: precisions side by side, compiled break-even, the d3rlpy peer, targets."""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import replace
from pathlib import Path

from aaren_rl.aaren_policy import BackboneConfig
from aaren_rl.bench.train import (
    TrainBenchConfig,
    TrainRecord,
    measure_peer,
    run_train_bench,
    side_by_side,
    train_targets,
)

TINY = dict(model=BackboneConfig(dim=16, num_layers=1), warmup=0, steps=1, peer=False, compile=())


def test_precisions_side_by_side() -> None:
    lines: list[str] = []
    cfg = TrainBenchConfig(  # K = 16: at K = 4 the bf16 copies autocast saves weigh as much
        context_lengths=(16,), batch_sizes=(2,), precision=("fp32", "bf16"), **TINY
    )
    recs = run_train_bench(cfg, log=lines.append)
    assert [(r.backbone, r.precision, r.compiled) for r in recs] == [
        ("aaren", "fp32", False), ("aaren", "bf16", False),
        ("transformer", "fp32", False), ("transformer", "bf16", False),
    ]  # fmt: skip
    # bf16 saves bf16 activations: less memory for backward than fp32.
    by = {(r.backbone, r.precision): r for r in recs}
    assert by["aaren", "bf16"].saved_tensor_bytes < by["aaren", "fp32"].saved_tensor_bytes
    table = lines[-1]
    assert "| backbone | K | batch | fp32 ms | bf16 ms | bf16 / fp32 |" in table
    assert table.count("\n| aaren | 16 | 2 |") == 1 and "d3rlpy: skipped" in "\n".join(lines)


def _rec(backbone: str, precision: str, ms: float, compiled: bool = False, first: float = 0.1):
    return TrainRecord(backbone, 20, 64, 3840, precision, compiled, ms / 1e3, ms / 1e3, first,
                       None, 0, 0, 1)  # fmt: skip


def test_break_even_and_targets() -> None:
    recs = [
        _rec("aaren", "fp32", 400),
        _rec("aaren", "bf16", 180),
        _rec("aaren", "bf16", 150, compiled=True, first=60.1),
        _rec("transformer", "fp32", 400),
        _rec("transformer", "bf16", 250),
        _rec("transformer", "bf16", 300, compiled=True, first=30.0),
        _rec("d3rlpy-dt", "fp32", 380),
    ]
    table = side_by_side(recs)
    # aaren: (60.1 - 0.1) s extra warm-up / 30 ms gained per step = 2000 steps to break even
    assert "| aaren | 20 | 64 | 400 | 180 | 150 | 0.45 | 2000 (warm-up 60 s) |" in table
    assert "never (compiled 1.20x eager)" in table
    assert "| d3rlpy-dt | 20 | 64 | 380 | - | - | - | - |" in table
    met = {t["target"]: t["met"] for t in train_targets(recs)}
    assert met["aaren bf16 step <= 0.5x fp32 step (K=20, batch 64)"]
    assert not met["transformer bf16 step <= 0.5x fp32 step (K=20, batch 64)"]
    assert met["aaren bf16 step <= 0.5x d3rlpy DT step (K=20, batch 64)"]
    assert not met["transformer bf16 step <= 0.5x d3rlpy DT step (K=20, batch 64)"]


def test_peer_step_from_its_json(tmp_path: Path) -> None:
    """The peer runs bench/peer/d3rlpy_dt.py in its venv; a stand-in python writes its JSON
    after the checks the real script makes of its dataset (it must name its environment)."""
    from aaren_rl.cpu import freed_memory_env

    # the peer runs with the allocator thresholds this process has (aaren_rl.cpu)
    mmap = os.environ.get("MALLOC_MMAP_THRESHOLD_") or freed_memory_env().get(
        "MALLOC_MMAP_THRESHOLD_"
    )
    fake = tmp_path / "python"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys, h5py\n"
        f"assert os.environ.get('MALLOC_MMAP_THRESHOLD_') == {mmap!r}, 'allocator'\n"
        "a = sys.argv\n"
        "with h5py.File(a[a.index('--dataset') + 1]) as f:\n"
        "    assert '--env' in a or 'env_id' in f.attrs, 'no env_id: d3rlpy_dt.py stops'\n"
        "    assert f['observations'].shape[1] == 11 and f['actions'].shape[1] == 3\n"
        "rec = {'train_seconds_per_step': 0.2, 'settings': {'parameters': 726275}}\n"
        "open(a[a.index('--out') + 1], 'w').write(json.dumps(rec))\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    cfg = replace(TrainBenchConfig(**TINY), peer=True, peer_python=fake)
    rec = measure_peer(cfg, log=lambda s: None)
    assert rec is not None and rec.backbone == "d3rlpy-dt" and rec.step_s_median == 0.2
    assert rec.params == 726275
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    lines: list[str] = []
    assert measure_peer(replace(cfg, peer_python=broken), log=lines.append) is None
    assert "d3rlpy: failed" in lines[0]
    assert json.dumps(rec.__dict__)  # a JSON record


def test_peer_script_constants_match_the_project() -> None:
    """bench/peer/d3rlpy_dt.py imports nothing from aaren-rl (it runs in d3rlpy's venv), so it
    repeats the reference scores, target returns and the best-score label: kept equal here."""
    import importlib.util

    from aaren_rl.bench.returns import BEST_CONVENTION
    from aaren_rl.envs import get_env_spec

    path = Path(__file__).parents[2] / "bench" / "peer" / "d3rlpy_dt.py"
    spec = importlib.util.spec_from_file_location("d3rlpy_dt_peer", path)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)  # type: ignore[union-attr]
    assert peer.BEST_CONVENTION == BEST_CONVENTION
    for gym_id, (lo, hi, target) in peer.TASKS.items():
        ours = get_env_spec(gym_id)
        assert (lo, hi, target) == (ours.random_score, ours.expert_score, ours.target_returns[0])
