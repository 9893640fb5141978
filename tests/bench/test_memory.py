"""aaren-bench memory on a tiny grid: records, resuming, summary, targets, the run plan."""

from __future__ import annotations

import json
from pathlib import Path

from aaren_rl.bench.cli import main
from aaren_rl.bench.memory import MemoryConfig, Unit, _decision_weights, _runs, targets

FIELDS = {"env", "memory_length", "backbone", "mode", "seed", "success_rate", "return_mean",
          "act_us", "state_bytes", "train_steps"}  # fmt: skip


def _args(out: Path) -> list[str]:
    return ["memory", "--tasks", "tmaze", "--lengths", "4", "25", "--seeds", "0",
            "--curriculum", "4", "--stage-steps", "3", "--final-steps", "3",
            "--episodes-per-length", "4", "--model.dim", "16", "--model.num-layers", "1",
            "--eval-episodes", "4", "--eval-envs", "2", "--timing-episodes", "1",
            "--full-window-max", "4", "--device", "cpu", "--out", str(out)]  # fmt: skip


def test_tiny_grid_records_resume_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "mem"
    assert main(_args(out)) == 0
    runs = sorted((out / "records").glob("*.json"))
    # aaren: recurrent at L=4, 25; transformer: kv, window20 at both, windowL at L=4 only
    assert len(runs) == 2 + 2 * 2 + 1
    rec = json.loads(runs[0].read_text())
    assert FIELDS <= set(rec) and rec["train_steps"] == 3
    by = {(r["backbone"], r["mode"], r["memory_length"]): r
          for r in (json.loads(p.read_text()) for p in runs)}  # fmt: skip
    assert (
        by[("aaren", "recurrent", 4)]["state_bytes"]
        == by[("aaren", "recurrent", 25)]["state_bytes"]
    )
    assert (
        by[("transformer", "kv", 25)]["state_bytes"] > by[("transformer", "kv", 4)]["state_bytes"]
    )
    summary = json.loads((out / "memory.json").read_text())
    assert summary["records"] == 7 and (out / "memory.png").exists()
    stamps = [p.stat().st_mtime_ns for p in runs]
    assert main(_args(out)) == 0  # resumed: every record exists, nothing re-run
    assert [p.stat().st_mtime_ns for p in runs] == stamps


def test_bad_task_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["memory", "--tasks", "hopper", "--out", str(tmp_path)]) == 2
    assert "not a memory task" in capsys.readouterr().err


def test_run_plan_and_decision_weights() -> None:
    import torch

    from aaren_rl.envs.sampling import Batch

    cfg = MemoryConfig(lengths=(10, 300, 1500), full_window_max=300)
    modes = [
        (r.memory_length, r.mode, r.context_length)
        for r in _runs(cfg, Unit("tmaze", "transformer", 0))
    ]
    assert (1500, "windowL", 1501) not in modes and (300, "windowL", 301) in modes
    assert (1500, "window20", 20) in modes
    mask = torch.tensor([[True, True, True], [True, False, False]])
    z = torch.zeros(2, 3)
    w = _decision_weights(Batch(z[..., None], z[..., None], z[..., None], z.long(), mask), True)
    assert w.tolist() == [[1.0, 1.0, 3.0], [1.0, 1.0, 1.0]]


def test_targets_read_the_summary() -> None:
    rows = [
        {"task": "tmaze", "agent": "aaren-recurrent", "memory_length": L, "success_min": s,
         "success_mean": s, "act_us": us, "state_bytes": 552}
        for L, s, us in ((10, 1.0, 100.0), (1000, 0.97, 110.0), (1500, 0.9, 120.0))
    ] + [{"task": "tmaze", "agent": "transformer-window20", "memory_length": 100,
          "success_mean": 0.5, "act_us": 1.0, "state_bytes": 800}]  # fmt: skip
    met = {t["target"].split(" (")[0]: t["met"] for t in targets(rows)}
    assert met["Aaren recurrent success >= 95% at L=1000, every seed"] is True
    assert met["Aaren recurrent success >= 95% at L=1500, every seed"] is False
    assert met["Aaren act_us(L=1500) / act_us(L=10) <= 1.25"] is True
    assert met["Transformer window K=20 at chance"] is True
