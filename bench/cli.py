"""``aaren-bench``: efficiency and return benchmarks (see docs/benchmarks.md).

    aaren-bench act       time per action and state memory vs episode step t, actions/s vs
                          batch size, for every acting path (eager, TorchScript, ONNX)
    aaren-bench train     training step time and activation memory vs context length K
    aaren-bench threads   the training step per threading setting, next to 0..N busy processes
    aaren-bench returns   Aaren-DT vs Transformer-DT scores on the same data, seeds and budget
    aaren-bench scan      the prefix-attention scan methods: time and memory, forward + backward
    aaren-bench datasets  check D4RL-format files against their attrs and the grid's dataset record
    aaren-bench memory    success vs memory length (T-Maze, POPGym) and time per action
    aaren-bench attention how local a trained Aaren model's attention is on dataset episodes
    aaren-bench horizon   scores of Aaren checkpoints acting recurrently, per memory horizon
    aaren-bench online    online fine-tuning (aaren-finetune) of offline checkpoints x seeds

Results go under ``--out`` (default ``runs/bench/`` in the current directory; the commands in
the docs pass ``--out docs/results/...``). Each subcommand prints a Markdown table with its
targets. New subcommands: add a ``(config class, runner)`` pair to ``BENCHMARKS``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aaren_rl.bench.act import ActBenchConfig
from aaren_rl.bench.arguments import check_bench_args
from aaren_rl.bench.attention import AttentionConfig, run_attention
from aaren_rl.bench.common import RESULTS, machine, markdown_table, report, write_json
from aaren_rl.bench.datasets_check import DatasetsConfig, run_datasets
from aaren_rl.bench.horizon import HorizonConfig, run_horizon
from aaren_rl.bench.memory import MemoryConfig, run_memory
from aaren_rl.bench.online import OnlineBenchConfig, run_online_bench
from aaren_rl.bench.returns import ReturnsConfig, run_returns_bench
from aaren_rl.bench.scan import ScanConfig, run_scan
from aaren_rl.bench.threads import ThreadsBenchConfig
from aaren_rl.bench.train import TrainBenchConfig, run_train_bench, train_targets
from aaren_rl.bench.train import records_to_json as train_json
from aaren_rl.cli import run_cli
from aaren_rl.errors import AarenError
from aaren_rl.fileio import check_output_dir

__all__ = ["BENCHMARKS", "ActCommand", "TrainCommand", "main"]


@dataclass
class ActCommand(ActBenchConfig):
    """Time per action, state memory and actions/s of every acting path."""

    out: Path = RESULTS
    """Folder for act.json (settings, agents, returns, summary, targets, per-t records),
    act.png (time and state vs t) and act-throughput.png (actions/s vs batch size)."""


@dataclass
class TrainCommand(TrainBenchConfig):
    """Training step time and activation memory vs context length K."""

    out: Path = RESULTS
    """Folder for train.json (the command, the CPU, one record per backbone, K and precision)
    and train.png."""


def _command_line() -> str:
    return "aaren-bench " + " ".join(sys.argv[1:])


def _act_tables(data: dict) -> None:
    """The batch-1 table at the reported t, the throughput table and the paths table."""
    rows = [
        {**r, "median": f"{r['time_us_median']:.0f}", "p90": f"{r['time_us_p90']:.0f}"}
        for r in data["summary"]
    ]
    cols = [("agent", "agent"), ("t", "t"), ("median µs", "median"), ("p90 µs", "p90")]
    print(markdown_table(rows, cols + [("state bytes", "state_bytes")]))
    print()
    rows = [
        {**r, "us": f"{r['time_us_per_call']:.0f}", "aps": f"{r['actions_per_s']:,.0f}"}
        for r in data["throughput"]
    ]
    cols = [("agent", "agent"), ("envs", "num_envs"), ("µs / call", "us")]
    cols += [("actions/s", "aps"), ("state bytes at the end", "state_bytes_end")]
    print(markdown_table(rows, cols))
    print()
    print(markdown_table(paths_table(data), PATH_COLUMNS))
    print()


PATH_COLUMNS = [
    ("path", "agent"),
    ("engine", "engine"),
    ("µs/action, batch 1, t=1000", "us_t1000"),
    ("actions/s, 256 envs", "aps_256"),
    ("file bytes", "model_bytes"),
    ("state bytes, t=1000", "state_t1000"),
    ("ONNX nodes", "nodes"),
    ("return (normalised)", "score"),
]


def _score(ret: dict | None) -> str:
    if not ret:
        return "-"
    if ret.get("normalized_mean") is None:
        return "failed" if "error" in ret else f"{ret['return_mean']:.0f} (return)"
    return f"{ret['normalized_mean']:.1f} ± {ret['normalized_std']:.1f}"


def paths_table(data: dict) -> list[dict]:
    """One row per acting path: cost at batch 1 and 256, sizes, and its return if scored."""
    at = {(r["agent"], r["t"]): r for r in data["summary"]}
    tp = {(r["agent"], r["num_envs"]): r for r in data["throughput"]}
    t_last = max((r["t"] for r in data["summary"]), default=0)
    rows = []
    for name, info in data["agents"].items():
        row = at.get((name, 1000)) or at.get((name, t_last))
        ret = data["returns"].get(name)
        rows.append(
            {
                "agent": name,
                "engine": info["engine"],
                "us_t1000": f"{row['time_us_median']:.0f}" if row else "-",
                "aps_256": f"{tp[(name, 256)]['actions_per_s']:,.0f}" if (name, 256) in tp else "-",
                "model_bytes": f"{info['model_bytes']:,}",
                "state_t1000": f"{row['state_bytes']:,}" if row else "-",
                "nodes": info.get("onnx_nodes_optimised", "-"),
                "score": _score(ret),
            }
        )
    return rows


def run_act(cmd: ActCommand) -> None:
    from aaren_rl.bench import act
    from aaren_rl.bench.agents import (
        PolicySource,
        onnx_floors,
        onnx_profile,
        temporary_workdir,
    )
    from aaren_rl.bench.plots import plot_act, plot_throughput

    check_output_dir(cmd.out, "--out")
    d3rlpy_ms = None
    if cmd.d3rlpy_json is not None:
        try:
            d3rlpy_ms = float(json.loads(Path(cmd.d3rlpy_json).read_text())["act_ms_median"])
        except (OSError, ValueError, KeyError) as e:
            raise AarenError(f"--d3rlpy-json {cmd.d3rlpy_json}: no act_ms_median ({e})") from e
    where = machine()
    print(f"machine: {where}", flush=True)
    with temporary_workdir() as tmp:
        if cmd.checkpoint_aaren is not None:
            source = PolicySource.from_checkpoints(
                cmd.checkpoint_aaren, cmd.checkpoint_transformer, Path(tmp),  # type: ignore[arg-type]
                cmd.context_length, cmd.threads,
            )  # fmt: skip
        else:
            source = PolicySource.fresh(cmd, Path(tmp), cmd.context_length, cmd.threads)
        records, agents = act.run_act_bench(cmd, source, log=lambda s: print(s, flush=True))
        info = act.agent_info(agents, source)
        gemv_us = floors = None
        if "aaren-onnx" in agents:  # the floors aaren-onnx is held to, timed in turn with it
            rounds = 2 if cmd.quick else 10
            floors = onnx_floors(agents["aaren-onnx"], source.models["aaren"], cmd.threads, rounds)
            gemv_us = floors["gemv_us"]
            print(
                f"timed in turn, t >= 1000: aaren-onnx {floors['aaren_onnx_us']:.0f} µs, fp32 GEMV "
                f"limit (every linear weight once) {gemv_us:.0f} µs, its {floors['nodes']} "
                f"matrix products alone {floors['matmul_us']:.0f} µs",
                flush=True,
            )
        profile = None
        if cmd.profile_onnx:
            calls = 30 if cmd.quick else 1000
            print(f"profiling aaren-onnx's step graph ({calls} calls)...", flush=True)
            profile = onnx_profile(agents["aaren-onnx"], calls)
        returns = {}
        if cmd.eval_episodes:
            print(f"scoring every agent on {cmd.eval_episodes} episodes...", flush=True)
            returns = act.score_agents(agents, source, cmd.eval_episodes, cmd.eval_num_envs)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cmd).items()}
    data = {
        "command": _command_line(),
        "machine": where,
        "settings": settings,
        "agents": info,
        "returns": returns,
        "summary": act.summarize(records),
        "throughput": act.throughput(records),
        "gemv_limit_us": gemv_us,
        "onnx_floors": floors,
        "onnx_profile": profile,
        "targets": act.act_targets(records, d3rlpy_ms, floors),
        "records": act.records_to_json(records),
    }
    out = Path(cmd.out)
    json_path = write_json(out / "act.json", data)
    net = next(iter(source.models.values())).config.net
    title = (
        f"aaren-bench act: d={net.dim}, {net.num_layers} layers, K={cmd.context_length}, "
        f"{cmd.threads} thread(s); {where}"
    )
    pngs = [plot_act(data["records"], out / "act.png", title=title)]
    if len(cmd.num_envs) > 1:
        pngs.append(plot_throughput(data["throughput"], out / "act-throughput.png", title=title))
    _act_tables(data)
    if profile is not None:
        print(
            f"\naaren-onnx step graph under onnxruntime's profiler: {profile['nodes']} nodes, "
            f"{profile['us_per_call']:.0f} µs per call in kernels (profiler cost included)"
        )
        rows = [
            {"op": op, "nodes": r["nodes"], "us": f"{r['us_per_call']:.1f}",
             "share": f"{r['share']:.0%}"}
            for op, r in profile["by_op"].items()
        ]  # fmt: skip
        print(markdown_table(rows, [("operator", "op"), ("nodes", "nodes"), ("µs / call", "us"),
                           ("share", "share")]))  # fmt: skip
    report([], [], data["targets"], json_path, *pngs)


def run_train(cmd: TrainCommand) -> None:
    from aaren_rl.bench.plots import plot_train

    check_output_dir(cmd.out, "--out")
    where = machine()
    print(f"machine: {where}", flush=True)
    records = run_train_bench(cmd, log=lambda s: print(s, flush=True))
    data = train_json(records)
    out = Path(cmd.out)
    json_path = write_json(
        out / "train.json", {"command": _command_line(), "machine": where, "records": data}
    )
    png = plot_train(
        [r for r in data if r["precision"] == "fp32" and not r["compiled"]] or data,
        out / "train.png",
        title=f"aaren-bench train: d={cmd.model.dim}, {cmd.model.num_layers} layers; {where}",
    )
    rows = [
        {
            **r,
            "variant": r["precision"] + (" compiled" if r["compiled"] else ""),
            "ms": f"{r['step_s_median'] * 1e3:.0f}",
            "mib": "-"
            if r["saved_tensor_bytes"] is None
            else f"{r['saved_tensor_bytes'] / 2**20:.1f}",
            "params": f"{r['params']:,}",
        }
        for r in data
    ]
    cols = [("backbone", "backbone"), ("K", "context_length"), ("batch", "batch_size")]
    cols += [("tokens", "tokens"), ("precision", "variant"), ("ms / step (median)", "ms")]
    cols += [("saved MiB", "mib")]
    cols += [("params", "params")]
    report(rows, cols, train_targets(records), json_path, png)


def run_threads(cmd: ThreadsBenchConfig) -> None:
    from aaren_rl.bench.threads import run_threads_bench, threads_rows, threads_targets

    check_output_dir(cmd.out, "--out")
    where = machine()
    print(f"machine: {where}", flush=True)
    records = run_threads_bench(cmd, log=lambda s: print(s, flush=True))
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cmd).items()}
    data = {
        "command": _command_line(),
        "machine": where,
        "settings": settings,
        "targets": threads_targets(records),
        "records": records,
    }
    json_path = write_json(Path(cmd.out) / "threads.json", data)
    cols = [("backbone", "backbone"), ("busy processes", "load")]
    cols += [(f"{s} ms (x best)", s) for s in cmd.settings]
    report(threads_rows(records), cols, data["targets"], json_path)


def _grid(run: Callable[[Any], Any], cmd: Any) -> int:
    """A grid of runs: exit 1 when some failed (the others are kept), else 0."""
    print(f"machine: {machine()}", flush=True)
    try:
        run(cmd)
    except RuntimeError as e:
        print(f"aaren-bench: {e}", file=sys.stderr)
        return 1
    return 0


def run_returns(cmd: ReturnsConfig) -> int:
    return _grid(run_returns_bench, cmd)


def run_online(cmd: OnlineBenchConfig) -> int:
    return _grid(run_online_bench, cmd)


# name -> (config class parsed by tyro, runner).
BENCHMARKS: dict[str, tuple[type, Callable[[Any], Any]]] = {
    "act": (ActCommand, run_act),
    "train": (TrainCommand, run_train),
    "threads": (ThreadsBenchConfig, run_threads),
    "returns": (ReturnsConfig, run_returns),
    "online": (OnlineBenchConfig, run_online),
    "scan": (ScanConfig, run_scan),
    "datasets": (DatasetsConfig, run_datasets),
    "memory": (MemoryConfig, run_memory),
    "attention": (AttentionConfig, run_attention),
    "horizon": (HorizonConfig, run_horizon),
}


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``aaren-bench`` (exit codes as every aaren-rl CLI)."""

    def body() -> int | None:
        import tyro

        parsed = tyro.extras.subcommand_cli_from_dict(
            {name: cls for name, (cls, _) in BENCHMARKS.items()},
            args=sys.argv[1:] if argv is None else argv,
            description=__doc__,
        )
        check_bench_args(parsed)  # every number and list, before any work
        runner = next(run for cls, run in BENCHMARKS.values() if type(parsed) is cls)
        code = runner(parsed)  # an exit code, or results (then success)
        return code if isinstance(code, int) else None

    return run_cli("aaren-bench", body)


if __name__ == "__main__":
    sys.exit(main())
