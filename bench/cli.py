"""``aaren-bench``: efficiency benchmarks (see docs/benchmarks.md).

    aaren-bench act     per-action time and state memory vs episode step t
    aaren-bench train   training step time and activation memory vs context length K
    aaren-bench returns Aaren-DT vs Transformer-DT scores on the same data, seeds and budget

Each subcommand writes a JSON list of records (``--json``) and a PNG (``--png``), by default
under ``docs/results/bench/``, and prints a markdown table with the issue's targets.
New subcommands: add a ``(config class, runner)`` pair to ``BENCHMARKS``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aaren_rl.bench.act import ActBenchConfig, act_targets, run_act_bench, summarize
from aaren_rl.bench.act import records_to_json as act_json
from aaren_rl.bench.returns import ReturnsConfig, run_returns_bench
from aaren_rl.bench.train import TrainBenchConfig, run_train_bench, train_targets
from aaren_rl.bench.train import records_to_json as train_json

__all__ = ["BENCHMARKS", "ActCommand", "TrainCommand", "machine", "main"]

RESULTS = Path("docs/results/bench")


def machine() -> str:
    """One line: CPU model, core count, torch version, load average (the box is shared)."""
    cpu = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        cpu = next(
            (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")),
            cpu,
        )
    except (OSError, subprocess.SubprocessError):
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, load average {load}"


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[k]) for _, k in columns) + " |")
    return "\n".join(lines)


def _targets_table(targets: list[dict]) -> str:
    rows = [{**t, "met": "yes" if t["met"] else "**no**"} for t in targets]
    return _table(rows, [("target", "target"), ("measured", "measured"), ("met", "met")])


def _report(
    rows: list[dict], cols: list[tuple[str, str]], targets: list[dict], json_path: Path, png: Path
) -> None:
    """The closing lines every benchmark prints: its table, its targets, where it wrote."""
    print(_table(rows, cols))
    print()
    print(_targets_table(targets))
    print(f"\nmachine after the run: {machine()}")
    print(f"wrote {json_path} and {png}")


@dataclass
class ActCommand(ActBenchConfig):
    """Per-action time and agent state memory vs episode step t."""

    json: Path = RESULTS / "act.json"
    """Records {agent, t, time_us_median, time_us_p90, state_bytes, params, model_bytes}."""
    png: Path = RESULTS / "act.png"
    """Plot: time vs t and state bytes vs t."""


@dataclass
class TrainCommand(TrainBenchConfig):
    """Training step time and activation memory vs context length K."""

    json: Path = RESULTS / "train.json"
    """Records, one per (backbone, K)."""
    png: Path = RESULTS / "train.png"
    """Plot: step time and saved-tensor memory vs K."""


def run_act(cmd: ActCommand) -> None:
    from aaren_rl.bench.plots import plot_act

    where = machine()
    print(f"machine: {where}", flush=True)
    records = run_act_bench(cmd, log=lambda s: print(s, flush=True))
    data = act_json(records)
    _write_json(cmd.json, data)
    title = (
        f"aaren-bench act: d={cmd.dim}, {cmd.num_layers} layers, K={cmd.context_length}, "
        f"batch 1, {cmd.threads} thread(s); {where}"
    )
    plot_act(data, cmd.png, title=title)
    rows = [
        {
            **r,
            "time_us_median": f"{r['time_us_median']:.0f}",
            "time_us_p90": f"{r['time_us_p90']:.0f}",
            "params": f"{r['params']:,}",
        }
        for r in summarize(records)
    ]
    cols = [("agent", "agent"), ("t", "t"), ("median µs", "time_us_median")]
    cols += [("p90 µs", "time_us_p90"), ("state bytes", "state_bytes"), ("params", "params")]
    cols += [("model bytes", "model_bytes")]
    _report(rows, cols, act_targets(records), cmd.json, cmd.png)


def run_train(cmd: TrainCommand) -> None:
    from aaren_rl.bench.plots import plot_train

    where = machine()
    print(f"machine: {where}", flush=True)
    records = run_train_bench(cmd, log=lambda s: print(s, flush=True))
    data = train_json(records)
    _write_json(cmd.json, data)
    plot_train(
        [r for r in data if r["precision"] == "fp32" and not r["compiled"]] or data,
        cmd.png,
        title=f"aaren-bench train: d={cmd.dim}, {cmd.num_layers} layers; {where}",
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
    _report(rows, cols, train_targets(records), cmd.json, cmd.png)


def run_returns(cmd: ReturnsConfig) -> None:
    print(f"machine: {machine()}", flush=True)
    run_returns_bench(cmd)


# name -> (config class parsed by tyro, runner).
BENCHMARKS: dict[str, tuple[type, Callable[[Any], None]]] = {
    "act": (ActCommand, run_act),
    "train": (TrainCommand, run_train),
    "returns": (ReturnsConfig, run_returns),
}


def main(argv: list[str] | None = None) -> int:
    import tyro

    parsed = tyro.extras.subcommand_cli_from_dict(
        {name: cls for name, (cls, _) in BENCHMARKS.items()},
        args=sys.argv[1:] if argv is None else argv,
        description=__doc__,
    )
    runner = next(run for cls, run in BENCHMARKS.values() if type(parsed) is cls)
    try:
        runner(parsed)
    except ValueError as e:
        print(f"aaren-bench: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # e.g. runs of `returns` that failed (the others are kept)
        print(f"aaren-bench: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
