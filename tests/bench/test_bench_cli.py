"""The benchmarks run end to end at tiny sizes (the real runs live in docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path

from aaren_rl.bench.act import ACT_AGENTS, ActBenchConfig, act_targets, run_act_bench, summarize
from aaren_rl.bench.cli import main
from aaren_rl.bench.train import (
    TrainBenchConfig,
    run_train_bench,
    saved_tensor_bytes,
    train_targets,
)

TINY = dict(dim=16, num_layers=1, num_heads=1)
FOUR = ("aaren-recurrent", "aaren-window", "transformer-window", "transformer-kv")


def test_act_agents_registry():
    assert set(ACT_AGENTS) >= {"aaren-recurrent", "aaren-window", "transformer-window",
                               "transformer-kv"}  # fmt: skip


def test_act_bench_records():
    cfg = ActBenchConfig(steps=12, repeats=2, context_length=4, agents=FOUR, **TINY)
    recs = run_act_bench(cfg, log=lambda s: None)
    assert len(recs) == 4 * 12
    by = {}
    for r in recs:
        by.setdefault(r.agent, []).append(r)
    assert [r.t for r in by["aaren-recurrent"]] == list(range(1, 13))
    assert len({r.state_bytes for r in by["aaren-recurrent"]}) == 1  # O(1) state
    kv = [r.state_bytes for r in by["transformer-kv"]]
    assert kv == sorted(kv) and kv[-1] > kv[0]  # the KV cache grows
    assert len({r.state_bytes for r in by["transformer-window"]}) == 1  # K-sized buffers
    assert all(r.time_us_p90 >= r.time_us_median > 0 for r in recs)
    params = {a: rs[0].params for a, rs in by.items()}
    assert abs(params["aaren-recurrent"] - params["transformer-kv"]) == 16  # one query/layer
    rows = summarize(recs, ts=(1, 10))
    assert len(rows) == 4 * 2 and {r["t"] for r in rows} == {1, 10}
    assert act_targets(recs) == []  # the targets compare t = 10 with t = 1000: none here
    sizes = {a: rs[0].model_bytes for a, rs in by.items()}
    assert sizes["aaren-recurrent"] - sizes["transformer-kv"] == 16 * 4  # float32 weights


def test_act_bench_compiled_and_onnx_agents_report_sizes():
    cfg = ActBenchConfig(steps=6, repeats=1, agents=("aaren-compiled", "aaren-onnx"), **TINY)
    recs = run_act_bench(cfg, log=lambda s: None)
    by = {r.agent: r for r in recs if r.t == 6}
    assert by["aaren-compiled"].params == by["aaren-onnx"].params > 0
    assert by["aaren-onnx"].model_bytes > 0 and by["aaren-compiled"].model_bytes > 0
    assert (
        by["aaren-onnx"].state_bytes == next(r for r in recs if r.agent == "aaren-onnx").state_bytes
    )


def test_train_bench_records():
    cfg = TrainBenchConfig(
        context_lengths=(4, 8), batch_sizes=(4, 2), warmup=1, steps=1, precision=("fp32",),
        compile=(), peer=False, **TINY,
    )  # fmt: skip
    recs = run_train_bench(cfg, log=lambda s: None)
    assert [(r.backbone, r.context_length) for r in recs] == [
        ("aaren", 4), ("transformer", 4), ("aaren", 8), ("transformer", 8)
    ]  # fmt: skip
    assert all(r.step_s_median > 0 and r.saved_tensor_bytes > 0 for r in recs)
    assert train_targets(recs) == []  # no K=20/1000 points here


def test_saved_tensor_bytes_grows_with_length():
    import torch

    lin = torch.nn.Linear(8, 8)
    small = saved_tensor_bytes(lambda: torch.tanh(lin(torch.randn(10, 8))).sum(), exclude=lin)
    big = saved_tensor_bytes(lambda: torch.tanh(lin(torch.randn(100, 8))).sum(), exclude=lin)
    assert big > 5 * small > 0


def test_bench_cli_writes_json_and_png(tmp_path: Path, capsys):
    j, p = tmp_path / "act.json", tmp_path / "act.png"
    rc = main(["act", "--steps", "5", "--repeats", "1", "--dim", "16", "--num-layers", "1",
               "--agents", "aaren-recurrent", "transformer-kv", "--json", str(j), "--png", str(p)])  # fmt: skip
    assert rc == 0 and p.stat().st_size > 0
    recs = json.loads(j.read_text())
    assert set(recs[0]) == {
        "agent", "t", "time_us_median", "time_us_p90", "state_bytes", "params", "model_bytes"
    }  # fmt: skip
    assert {r["agent"] for r in recs} == {"aaren-recurrent", "transformer-kv"}
    assert "| agent | t |" in capsys.readouterr().out

    j, p = tmp_path / "train.json", tmp_path / "train.png"
    rc = main(["train", "--context-lengths", "4", "--batch-sizes", "2", "--warmup", "0",
               "--steps", "1", "--dim", "16", "--num-layers", "1", "--precision", "fp32",
               "--compile", "--no-peer", "--json", str(j), "--png", str(p)])  # fmt: skip
    assert rc == 0 and p.stat().st_size > 0 and len(json.loads(j.read_text())) == 2


def test_bench_cli_bad_agent(capsys):
    assert main(["act", "--agents", "nope", "--steps", "2", "--json", "/dev/null",
                 "--png", "/dev/null"]) == 2  # fmt: skip
    assert "unknown agents" in capsys.readouterr().err
