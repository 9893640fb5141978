"""aaren-bench runs end to end at tiny sizes (the real runs live in docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aaren_rl.aaren_policy import BackboneConfig
from aaren_rl.bench.cli import main
from aaren_rl.bench.train import (
    TrainBenchConfig,
    run_train_bench,
    saved_tensor_bytes,
    train_targets,
)

TINY = dict(model=BackboneConfig(dim=16, num_layers=1, num_heads=1))


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


def test_bench_cli_act_writes_json_and_pngs(tmp_path: Path, capsys):
    rc = main(["act", "--quick", "--model.dim", "16", "--model.num-layers", "1", "--num-envs", "1", "2",
               "--agents", "aaren-recurrent", "transformer-kv", "aaren-onnx", "--out", str(tmp_path)])  # fmt: skip
    assert rc == 0
    assert (tmp_path / "act.png").stat().st_size > 0
    assert (tmp_path / "act-throughput.png").stat().st_size > 0
    data = json.loads((tmp_path / "act.json").read_text())
    assert set(data) >= {"command", "machine", "settings", "agents", "summary", "throughput",
                         "targets", "records"}  # fmt: skip
    assert set(data["records"][0]) == {
        "agent", "num_envs", "t", "time_us_median", "time_us_p90", "state_bytes", "params",
        "model_bytes",
    }  # fmt: skip
    assert {r["num_envs"] for r in data["records"]} == {1, 2}
    assert data["agents"]["aaren-onnx"]["onnx_nodes_optimised"] > 0
    assert data["agents"]["aaren-onnx"]["max_action_error_vs_pytorch"] <= 1e-5
    assert data["gemv_limit_us"] > 0  # the floor aaren-onnx is held to, timed in the same run
    floors = data["onnx_floors"]  # the step, the GEMV limit and the graph's own Gemm/MatMul
    assert min(floors["aaren_onnx_us"], floors["gemv_us"], floors["matmul_us"]) > 0
    assert all(len(v) == 2 for v in floors["rounds"].values())  # --quick: 2 rounds each
    assert len(floors["shapes"]) >= 5  # emb, per layer sv / P @ V / fc1 / fc2, the head
    assert [1, 16, 3] in floors["shapes"]  # the action head: 1 row, d = 16 -> act_dim 3
    assert any("interleaved" in t["target"] for t in data["targets"])
    out = capsys.readouterr().out
    assert "| agent | t |" in out and "| path | engine |" in out and "actions/s" in out


def test_bench_cli_train_writes_json_and_png(tmp_path: Path):
    rc = main(["train", "--context-lengths", "4", "--batch-sizes", "2", "--warmup", "0",
               "--steps", "1", "--model.dim", "16", "--model.num-layers", "1", "--precision", "fp32",
               "--compile", "--no-peer", "--out", str(tmp_path)])  # fmt: skip
    assert rc == 0 and (tmp_path / "train.png").stat().st_size > 0
    data = json.loads((tmp_path / "train.json").read_text())
    assert len(data["records"]) == 2 and "avx2" in data["cpu"]["flags"]
    assert all(r["flops_per_step"] > 0 and r["gflops_per_s"] > 0 for r in data["records"])


def test_bench_cli_defaults_write_under_runs_bench_not_docs():
    from aaren_rl.bench.cli import ActCommand, TrainCommand

    assert ActCommand().out == TrainCommand().out == Path("runs/bench")


def test_bench_cli_user_errors_exit_2(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as e:  # a config error is a usage error, reported by tyro
        main(["act", "--agents", "nope", "--out", str(tmp_path)])
    assert e.value.code == 2 and "unknown agents" in capsys.readouterr().err
    afile = tmp_path / "file"
    afile.write_text("x")
    assert main(["act", "--quick", "--agents", "aaren-recurrent", "--out", str(afile)]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["datasets", "--root", str(tmp_path)]) == 2  # no datasets there
    assert "no *.hdf5 datasets" in capsys.readouterr().err


def test_bench_scan_writes_json(tmp_path: Path):
    from aaren_rl.bench.scan import main as scan_main

    assert main(["scan", "--lengths", "8", "--sequences", "2", "--dim", "4", "--chunks", "4",
                 "--repeats", "1", "--out", str(tmp_path)]) == 0  # fmt: skip
    rows = json.loads((tmp_path / "scan_bench.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"chunked", "hillis_steele", "sequential", "naive"}
    with pytest.raises(SystemExit) as e:
        scan_main(["--lengths", "8", "--sequences", "1", "2"])  # one per length
    assert e.value.code == 2


def test_common_helpers(tmp_path: Path):
    from aaren_rl.bench.common import (
        ModelSize,
        bench_model,
        markdown_table,
        targets_table,
        write_json,
    )
    from aaren_rl.cpu import freed_memory_kept

    assert markdown_table([{"a": 1, "b": "x"}], [("A", "a"), ("B", "b")]) == (
        "| A | B |\n|---|---|\n| 1 | x |"
    )
    assert "**no**" in targets_table([{"target": "t", "measured": "m", "met": False}])
    write_json(tmp_path / "sub" / "x.json", {"k": [1]})
    written = json.loads((tmp_path / "sub" / "x.json").read_text())
    assert written["k"] == [1]  # and the CPU it was measured on, with its instruction sets
    assert set(written["cpu"]["flags"]) >= {"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}
    assert written["cpu"]["cores"] >= 1 and written["cpu"]["model"]
    assert written["malloc_keeps_freed_memory"] is freed_memory_kept()  # how memory was served
    size = ModelSize(model=BackboneConfig(dim=16, num_layers=1, dropout=0.0))
    a, t = bench_model(size, "aaren"), bench_model(size, "transformer")
    assert not a.training and a.num_parameters() - t.num_parameters() == 16


def test_train_plot_takes_a_record_without_memory(tmp_path: Path):
    """A peer (d3rlpy) record has a step time but no saved-activation figure."""
    from aaren_rl.bench.plots import plot_train

    rec = {"backbone": "aaren", "context_length": 20, "batch_size": 64, "step_s_median": 0.1}
    records = [
        {**rec, "saved_tensor_bytes": 2**20},
        {**rec, "backbone": "d3rlpy-dt", "saved_tensor_bytes": None},
    ]
    assert plot_train(records, tmp_path / "t.png").stat().st_size > 0


def test_threads_bench_times_each_setting_in_its_own_process(tmp_path: Path) -> None:
    """aaren-bench threads: one record per (load, setting), each setting's ratio to the best,
    the target row of the default, and the CPU record in the JSON."""
    from aaren_rl.bench.cli import main

    out = tmp_path / "threads"
    args = ["threads", "--loads", "0", "--settings", "default", "threads-1", "all-cores-spin"]
    args += ["--steps", "1", "--warmup", "0", "--context-length", "4", "--batch-size", "2"]
    args += ["--model.dim", "16", "--model.num-layers", "1", "--out", str(out)]
    assert main(args) == 0
    data = json.loads((out / "threads.json").read_text())
    recs = {r["setting"]: r for r in data["records"]}
    assert set(recs) == {"default", "threads-1", "all-cores-spin"}
    assert recs["threads-1"]["threads"] == 1
    assert recs["all-cores-spin"]["gomp_spincount"] == "300000"
    assert recs["default"]["gomp_spincount"] == "2000"  # aaren_rl.cpu's policy
    assert min(r["vs_best"] for r in recs.values()) == 1.0
    assert [t["target"] for t in data["targets"]] == ["aaren, 0 busy: default <= 1.2x best"]
    assert "avx2" in data["cpu"]["flags"]
