"""Ablation grid: one row per training change, both backbones, several datasets and seeds.

Each *row* is a named set of ``TrainConfig`` overrides (``NAME`` or
``NAME:field=value,field=value``; nested fields with dots, e.g. ``model.activation=relu``).
Every (row, dataset, backbone, seed) is one *run*: a separate process trains it with
``aaren_rl.train`` (one torch thread; ``--device auto`` puts it on the GPU when there is one,
all runs sharing it) and scores it with ``aaren_rl.eval.rollout`` in every acting mode of its
backbone: Aaren ``recurrent`` and ``window``, Transformer ``window``. Runs go through
``bench/grid.py`` (a local process pool of ``--jobs`` workers by default, or Ray).

Outputs in ``--out-dir``: one JSON per run (skipped when present, so a stopped grid resumes
where it was), then ``summary.json`` and ``summary.md``: mean ± std over seeds per
(dataset, row, backbone, acting), with the difference to the ``baseline`` row; and
``loss_curves.png``, the training loss of every row (mean ± std over seeds).

A one-off study, not part of the installed package: run it from the repository root. Example
(the ablation grid on the two Hopper datasets, 16 workers sharing one GPU):

    python -m studies.ablation \\
        --datasets d4rl:/data/hopper-medium.hdf5 d4rl:/data/hopper-medium_replay.hdf5 \\
        --seeds 0 1 2 --steps 1000 --eval-episodes 10 --jobs 16 --out-dir runs/ablation
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aaren_rl.bench.common import score_checkpoint
from aaren_rl.bench.overrides import apply_overrides, parse_overrides, parse_row
from aaren_rl.errors import ConfigError
from aaren_rl.fileio import atomic_write_json, atomic_write_text

__all__ = ["AblationConfig", "AblationRun", "run_ablation", "summarize"]

# The rows (docs/research/pilot.md): every known difference between d3rlpy's DT and ours, one
# at a time.
DEFAULT_ROWS = (
    "baseline",
    "relu:model.activation=relu",
    "gelu-tanh:model.activation=gelu_tanh",
    "loss-sum:loss_reduction=sum",
    "left-pad:padding=left",
    "warmup-10k:warmup_steps=10000",
    "lr-3e-4:learning_rate=3e-4",
    "state-mlp:state_encoder=mlp",
    "bf16:precision=bf16",
    "no-dropout:model.dropout=0",
    "query-init-1:model.query_init_std=1.0",  # Aaren only (the Transformer row = baseline)
    "torch-init:embed_init=torch",
    "d3rlpy-all:model.activation=relu,loss_reduction=sum,padding=left,warmup_steps=10000,"
    "embed_init=torch",
)
# backbone -> acting modes it is scored in.
ACTING = {"aaren": ("recurrent", "window"), "transformer": ("window",)}


@dataclass
class AblationConfig:
    """Train and score every (row, dataset, backbone, seed); summarise per row."""

    datasets: tuple[str, ...] = (
        "d4rl:runs/datasets/hopper-medium.hdf5",
        "d4rl:runs/datasets/hopper-medium-replay.hdf5",
    )
    """Dataset specs (d4rl:PATH, d4rl:NAME, minari:ID)."""
    rows: tuple[str, ...] = DEFAULT_ROWS
    """Rows: NAME or NAME:field=value,field=value (TrainConfig fields; model.x for the
    backbone's). Values are JSON (1e-4, 10000, true) or plain strings (relu)."""
    base: tuple[str, ...] = ("precision=fp32",)
    """Overrides applied to every row first (field=value), e.g. model.dim=64."""
    backbones: tuple[Literal["aaren", "transformer"], ...] = ("aaren", "transformer")
    """Backbones (each with its default recipe unless a row or --base sets recipe=...)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds; evaluation episodes of seed S use env seeds 1000 + 100 S + i."""
    steps: int = 1000
    """Gradient steps per run."""
    eval_episodes: int = 10
    """Episodes per acting mode at the end of training."""
    eval_max_episode_steps: int | None = None
    """Cut evaluation episodes earlier (tests; default: the env's limit)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where runs train: auto uses CUDA when present (all runs share the GPU)."""
    jobs: int | None = None
    """Runs at a time, one torch thread each (default: the cores available)."""
    executor: Literal["local", "ray"] = "local"
    """local: a process pool on this machine; ray: Ray tasks (pip install 'aaren-rl[ray]')."""
    out_dir: Path = Path("runs/ablation")
    """Per-run JSON, summary.md and summary.json."""
    work_dir: Path | None = None
    """Training runs (each run's final checkpoint stays here). Default: OUT_DIR/work."""
    summary_only: bool = False
    """Only rebuild the summary from the run JSON files."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.eval_episodes < 1:
            raise ConfigError("--steps and --eval-episodes must be >= 1")
        if not (self.datasets and self.rows and self.backbones and self.seeds):
            raise ConfigError("--datasets, --rows, --backbones and --seeds need a value each")
        names = [parse_row(r)[0] for r in self.rows]
        if len(set(names)) != len(names):
            raise ConfigError(f"--rows: row names must be unique, got {names}")
        for r in self.rows:  # every override must name a real field with a valid value
            _train_config(self, parse_row(r), self.datasets[0], self.backbones[0], 0, Path("."))

    @property
    def resolved_work_dir(self) -> Path:
        return self.work_dir or self.out_dir / "work"


def _train_config(
    cfg: AblationConfig,
    row: tuple[str, dict[str, Any]],
    dataset: str,
    backbone: str,
    seed: int,
    run_dir: Path,
) -> Any:
    from aaren_rl.train.config import TrainConfig

    tc = TrainConfig(
        dataset=dataset,
        backbone=backbone,  # type: ignore[arg-type]
        steps=cfg.steps,
        seed=seed,
        device=cfg.device,
        threads=1,  # runs side by side: one thread each
        eval_episodes=0,  # scored below, in every acting mode
        checkpoint_every=cfg.steps,
        run_dir=run_dir,
        progress=False,
    )
    tc = apply_overrides(tc, parse_overrides(cfg.base, "--base"))
    tc = apply_overrides(tc, row[1])
    tc.validate()
    return tc


@dataclass(frozen=True)
class AblationRun:
    """One (row, dataset, backbone, seed): a task of the grid."""

    row: str
    dataset: str
    backbone: str
    seed: int
    cfg: AblationConfig
    root: str

    @property
    def dataset_name(self) -> str:
        return Path(self.dataset.split(":", 1)[-1]).name.removesuffix(".hdf5").removesuffix(".h5")

    @property
    def name(self) -> str:
        return f"{parse_row(self.row)[0]}__{self.dataset_name}__{self.backbone}__s{self.seed}"

    @property
    def result_path(self) -> Path:
        return Path(self.root) / self.cfg.out_dir / f"{self.name}.json"

    @property
    def run_dir(self) -> Path:
        return Path(self.root) / self.cfg.resolved_work_dir / self.name


def run_one(run: AblationRun) -> str:
    """Train one run from scratch and score it in every acting mode; writes its JSON."""
    import torch

    from aaren_rl.train.loop import train

    os.chdir(run.root)
    torch.set_num_threads(1)
    if run.result_path.exists():
        return f"{run.name}: already done"
    shutil.rmtree(run.run_dir, ignore_errors=True)  # an interrupted run starts again
    name, overrides = parse_row(run.row)
    tc = _train_config(run.cfg, (name, overrides), run.dataset, run.backbone, run.seed, run.run_dir)
    t0 = time.perf_counter()
    result = train(tc)
    train_seconds = time.perf_counter() - t0
    acting = {}
    keep = ("normalized_mean", "normalized_std", "return_mean", "return_std", "returns", "lengths")
    for mode in ACTING[run.backbone]:
        ev = score_checkpoint(
            run.run_dir / "checkpoint",
            mode,
            run.seed,
            run.cfg.eval_episodes,
            run.cfg.eval_max_episode_steps,
        )
        acting[mode] = {k: ev.get(k) for k in keep}
    record = {
        "row": name,
        "overrides": {**parse_overrides(run.cfg.base, "--base"), **overrides},
        "dataset": run.dataset_name,
        "dataset_spec": run.dataset,
        "backbone": run.backbone,
        "recipe": tc.resolved_recipe,
        "seed": run.seed,
        "steps": tc.steps,
        "precision": result.precision,
        "device": "cuda" if torch.cuda.is_available() and tc.device != "cpu" else "cpu",
        "train_seconds_per_step": result.seconds_per_step,
        "train_seconds": train_seconds,
        "final_loss": result.final_loss,
        "loss_curve": [[m["step"], m["train/loss"]] for m in result.metrics if "train/loss" in m],
        "acting": acting,
        "config": tc.to_dict(),
    }
    atomic_write_json(run.result_path, record, indent=1)  # the checkpoint stays, to re-score
    scores = ", ".join(f"{m} {a['normalized_mean']:.1f}" for m, a in acting.items())
    return f"{run.name}: {scores}"


def grid(cfg: AblationConfig, root: str | None = None) -> list[AblationRun]:
    root = root or os.getcwd()
    return [
        AblationRun(row, d, bb, s, cfg, root)
        for d in cfg.datasets
        for row in cfg.rows
        for bb in cfg.backbones
        for s in cfg.seeds
    ]


def run_ablation(cfg: AblationConfig) -> list[dict[str, Any]]:
    """Run what is missing, then summarise; returns the summary rows.

    Raises:
        RuntimeError: some runs failed (the others are kept; the summary is still written).
    """
    from aaren_rl.bench.grid import GridOptions, run_grid

    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    if not cfg.summary_only:
        todo = [r for r in grid(cfg) if not r.result_path.exists()]
        print(f"{len(todo)} runs to do, {len(grid(cfg)) - len(todo)} done", flush=True)
        jobs = cfg.jobs or len(os.sched_getaffinity(0))
        opts = GridOptions(executor=cfg.executor, num_cpus=jobs, use_gpu=cfg.device != "cpu")
        failed = run_grid(run_one, todo, opts)
    rows = summarize(cfg.out_dir, [parse_row(r)[0] for r in cfg.rows])
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed:\n" + "\n".join(failed))
    return rows


def summarize(out_dir: Path, row_order: list[str] | None = None) -> list[dict[str, Any]]:
    """Mean ± std over seeds per (dataset, row, backbone, acting); writes summary.md/json."""
    records = [json.loads(p.read_text()) for p in sorted(out_dir.glob("*__*__*__s*.json"))]
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        for mode, a in r["acting"].items():
            groups.setdefault((r["dataset"], r["row"], r["backbone"], mode), []).append(
                {**a, "seed": r["seed"], "sps": r["train_seconds_per_step"]}
            )
    order = {name: i for i, name in enumerate(row_order or [])}
    rows = []
    for (ds, row, bb, mode), rs in sorted(
        groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99), kv[0][1], *kv[0][2:])
    ):
        scores = np.array([x["normalized_mean"] for x in sorted(rs, key=lambda x: x["seed"])])
        rows.append(
            {
                "dataset": ds,
                "row": row,
                "backbone": bb,
                "acting": mode,
                "seeds": len(rs),
                "normalized_mean": float(scores.mean()),
                "normalized_std": float(scores.std(ddof=1)) if len(rs) > 1 else 0.0,
                "per_seed": [round(float(s), 1) for s in scores],
                "train_seconds_per_step": float(np.mean([x["sps"] for x in rs])),
            }
        )
    base = {(r["dataset"], r["backbone"], r["acting"]): r for r in rows if r["row"] == "baseline"}
    for r in rows:
        b = base.get((r["dataset"], r["backbone"], r["acting"]))
        r["vs_baseline"] = None if b is None else r["normalized_mean"] - b["normalized_mean"]
    atomic_write_json(out_dir / "summary.json", rows, indent=1)
    atomic_write_text(out_dir / "summary.md", _markdown(rows) + "\n")
    print(_markdown(rows))
    if records:
        plot_losses(records, out_dir / "loss_curves.png", row_order)
    return rows


def plot_losses(
    records: list[dict[str, Any]], path: Path, row_order: list[str] | None = None
) -> None:
    """Training loss vs step, mean over seeds: one panel per (dataset, backbone), one line
    per row (e.g. bf16 against baseline: do the curves agree within seed noise?)."""
    from aaren_rl.bench.plots import plt, save_figure  # pyplot on the Agg backend

    panels = sorted({(r["dataset"], r["backbone"]) for r in records})
    rows = list(dict.fromkeys([*(row_order or []), *sorted({r["row"] for r in records})]))
    rows = [name for name in rows if any(r["row"] == name for r in records)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (ds, bb) in zip(axes[0], panels):
        for i, name in enumerate(rows):
            curves = [r["loss_curve"] for r in records if (r["dataset"], r["backbone"], r["row"])
                      == (ds, bb, name) and r["loss_curve"]]  # fmt: skip
            if not curves:
                continue
            n = min(len(c) for c in curves)
            steps = [c[0] for c in curves[0][:n]]
            loss = np.array([[c[1] for c in cur[:n]] for cur in curves])
            ax.plot(steps, loss.mean(0), color=f"C{i % 10}", label=f"{name} (n={len(curves)})")
            if len(curves) > 1:
                lo, hi = loss.mean(0) - loss.std(0), loss.mean(0) + loss.std(0)
                ax.fill_between(steps, lo, hi, color=f"C{i % 10}", alpha=0.15)
        ax.set(title=f"{ds} / {bb}", xlabel="step", ylabel="training loss", yscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | row | backbone | acting | seeds | normalised score (mean ± std) | "
        "vs baseline | per seed | train s/step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        delta = "-" if r["vs_baseline"] is None else f"{r['vs_baseline']:+.1f}"
        lines.append(
            f"| {r['dataset']} | {r['row']} | {r['backbone']} | {r['acting']} | {r['seeds']} | "
            f"{r['normalized_mean']:.1f} ± {r['normalized_std']:.1f} | {delta} | "
            f"{', '.join(map(str, r['per_seed']))} | {r['train_seconds_per_step']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import tyro

    from aaren_rl.cli import run_cli

    def go() -> int:
        cfg = tyro.cli(AblationConfig, args=sys.argv[1:] if argv is None else argv)
        try:
            run_ablation(cfg)
        except RuntimeError as e:  # failed runs (the others are kept)
            print(f"ablation: {e}", file=sys.stderr)
            return 1
        return 0

    return run_cli("ablation", go)


if __name__ == "__main__":
    sys.exit(main())
