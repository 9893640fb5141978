"""``aaren-bench returns``: Aaren-DT vs Transformer-DT on the same data, seeds and budget.

For every dataset x (backbone, recipe) x seed it trains with identical settings (the DT
reference model: d = 128, 3 layers, 1 head, K = 20), evaluates at several step counts
(to show whether the score has converged), and at the end evaluates every acting mode:
``recurrent`` (Aaren: O(1) state; Transformer: KV cache over the whole episode) and
``window`` (re-run the last K steps, as DT). One JSON per (run, mode) goes to
``docs/results/returns/``; ``--summary-only`` rebuilds the table (mean ± std over seeds)
and the plot from those files, together with any peer results (d3rlpy) found there.

Runs execute ``--jobs`` at a time (one torch thread each), skip finished runs, and continue
interrupted ones from their checkpoints (aaren-train's --resume).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ReturnsConfig", "RunSpec", "run_returns_bench", "summarize_returns"]

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"


@dataclass
class ReturnsConfig:
    """Train and evaluate every (dataset, backbone, recipe, seed) with the same budget."""

    datasets: tuple[str, ...] = (
        f"d4rl:{SHARED / 'hopper-medium.hdf5'}",
        f"d4rl:{SHARED / 'hopper-medium_replay.hdf5'}",
    )
    """Dataset specs (d4rl:PATH or minari:ID)."""
    runs: tuple[str, ...] = ("transformer:window", "aaren:window", "aaren:episode")
    """backbone:recipe pairs to train."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds (evaluation episodes use seeds 1000 + 100 * seed + i)."""
    steps: int = 1000
    """Gradient steps per run."""
    eval_at: tuple[int, ...] = (250, 500, 750)
    """Extra step counts at which the main mode is scored (the final step is always)."""
    eval_episodes: int = 10
    """Episodes per final evaluation (5 at the intermediate points)."""
    warmup_steps: int = 200
    """Learning-rate warm-up (explicit, so extending a run keeps the same schedule)."""
    jobs: int = 2
    """Runs at a time (each uses one torch thread)."""
    out_dir: Path = Path("docs/results/returns")
    """Where the per-run JSON files, the summary and the plot go."""
    work_dir: Path = Path("runs/returns")
    """Where the training runs (checkpoints) go."""
    summary_only: bool = False
    """Only rebuild the summary table and plot from the JSON files."""
    track: bool = False
    """Log each training run to W&B (offline mode without network)."""


@dataclass(frozen=True)
class RunSpec:
    dataset: str
    backbone: str
    recipe: str
    seed: int

    @property
    def dataset_name(self) -> str:
        return Path(self.dataset.split(":", 1)[-1]).stem

    @property
    def name(self) -> str:
        return f"{self.dataset_name}__{self.backbone}__{self.recipe}__s{self.seed}"

    @property
    def main_mode(self) -> str:
        # Aaren's point is recurrent acting; a Transformer acts the DT way.
        return "recurrent" if self.backbone == "aaren" else "window"


def _modes(backbone: str) -> tuple[str, ...]:
    return ("recurrent", "window")


def _result_path(out_dir: Path, spec: RunSpec, mode: str) -> Path:
    return out_dir / f"{spec.name}__{mode}.json"


def _write_json(path: Path, data: Any) -> None:
    from aaren_rl.agents.checkpoint import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=1))


def _evaluate(ckpt: Path, spec: RunSpec, mode: str, episodes: int) -> dict[str, Any]:
    from aaren_rl.agents import DecisionAgent
    from aaren_rl.eval.rollout import evaluate

    agent = DecisionAgent.load(ckpt, mode=mode)
    result = evaluate(
        agent, agent.env_id, episodes=episodes, num_envs=1, seed=1000 + 100 * spec.seed
    )
    return result.to_dict()


def _run_one(spec: RunSpec, cfg: ReturnsConfig) -> str:
    """Train (resuming where possible) and evaluate one run; writes its JSON files."""
    import torch

    from aaren_rl.train.config import TrainConfig
    from aaren_rl.train.loop import train

    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run_dir = cfg.work_dir / spec.name
    if run_dir.exists() and not (run_dir / "checkpoint" / "trainer.pt").exists():
        # Interrupted before its first checkpoint: nothing to resume, start it again.
        import shutil

        shutil.rmtree(run_dir)
    progress_path = run_dir / "bench-progress.json"
    progress = json.loads(progress_path.read_text()) if progress_path.exists() else {"curve": []}
    stages = sorted({s for s in cfg.eval_at if 0 < s < cfg.steps} | {cfg.steps})
    train_seconds: list[float] = progress.get("train_seconds", [])
    for stage in stages:
        if any(c["step"] == stage for c in progress["curve"]):
            continue
        done = run_dir / "checkpoint" / "trainer.pt"
        tc = TrainConfig(
            dataset=spec.dataset,
            backbone=spec.backbone,  # type: ignore[arg-type]
            recipe=spec.recipe,  # type: ignore[arg-type]
            steps=stage,
            seed=spec.seed,
            warmup_steps=cfg.warmup_steps,
            eval_episodes=0,
            checkpoint_every=100,
            run_dir=run_dir,
            resume=done.exists(),
            threads=1,
            progress=False,
            track=cfg.track,
            wandb_group=f"returns-{spec.dataset_name}",
        )
        t0 = time.perf_counter()
        result = train(tc)
        if result.steps and not np.isnan(result.seconds_per_step):
            train_seconds.append(result.seconds_per_step)
        episodes = cfg.eval_episodes if stage == cfg.steps else max(1, cfg.eval_episodes // 2)
        ev = _evaluate(run_dir / "checkpoint", spec, spec.main_mode, episodes)
        progress["curve"].append(
            {
                "step": stage,
                "mode": spec.main_mode,
                "episodes": episodes,
                "return_mean": ev["return_mean"],
                "normalized_mean": ev["normalized_mean"],
                "normalized_std": ev["normalized_std"],
                "wall_seconds": time.perf_counter() - t0,
            }
        )
        progress["train_seconds"] = train_seconds
        if stage == cfg.steps:
            progress[f"final_{spec.main_mode}"] = ev
        _write_json(progress_path, progress)

    for mode in _modes(spec.backbone):
        ev = progress.get(f"final_{mode}") or _evaluate(
            run_dir / "checkpoint", spec, mode, cfg.eval_episodes
        )
        record = {
            "dataset": spec.dataset_name,
            "dataset_spec": spec.dataset,
            "backbone": spec.backbone,
            "recipe": spec.recipe,
            "mode": mode,
            "seed": spec.seed,
            "steps": cfg.steps,
            "returns": ev["returns"],
            "lengths": ev["lengths"],
            "return_mean": ev["return_mean"],
            "return_std": ev["return_std"],
            "normalized_mean": ev["normalized_mean"],
            "normalized_std": ev["normalized_std"],
            "act_us_per_call": ev.get("act_us_per_call"),
            "train_seconds_per_step": float(np.median(train_seconds)) if train_seconds else None,
            "curve": progress["curve"] if mode == spec.main_mode else [],
            "settings": {
                "dim": 128,
                "num_layers": 3,
                "num_heads": 1,
                "context_length": 20,
                "episode_length": 1000,
                "batch_size": 4 if spec.recipe == "episode" else 64,
                "warmup_steps": cfg.warmup_steps,
                "threads": 1,
                "eval_seeds": f"1000 + 100 * seed + i, i < {cfg.eval_episodes}",
            },
        }
        _write_json(_result_path(cfg.out_dir, spec, mode), record)
    return spec.name


def _pending(cfg: ReturnsConfig) -> list[RunSpec]:
    specs = [
        RunSpec(d, *r.split(":", 1), s) for d in cfg.datasets for r in cfg.runs for s in cfg.seeds
    ]
    return [
        s
        for s in specs
        if not all(_result_path(cfg.out_dir, s, m).exists() for m in _modes(s.backbone))
    ]


def _worker(args: tuple[RunSpec, ReturnsConfig]) -> str:
    spec, cfg = args
    try:
        return _run_one(spec, cfg)
    except Exception as e:  # keep the other runs going; report at the end
        return f"FAILED {spec.name}: {e!r}"


def run_returns_bench(cfg: ReturnsConfig) -> list[dict[str, Any]]:
    """Run what is missing, then summarise; returns the summary rows."""
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    if not cfg.summary_only:
        pending = _pending(cfg)
        print(
            f"{len(pending)} runs to do ({cfg.jobs} at a time): "
            + ", ".join(s.name for s in pending)
        )
        if pending:
            ctx = mp.get_context("spawn")
            failed = []
            with ctx.Pool(cfg.jobs, maxtasksperchild=1) as pool:
                for msg in pool.imap_unordered(_worker, [(s, cfg) for s in pending]):
                    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)
                    if msg.startswith("FAILED"):
                        failed.append(msg)
            if failed:
                summarize_returns(cfg.out_dir)
                raise RuntimeError(f"{len(failed)} run(s) failed:\n" + "\n".join(failed))
    return summarize_returns(cfg.out_dir)


def summarize_returns(out_dir: Path) -> list[dict[str, Any]]:
    """Mean ± std over seeds per (dataset, backbone, recipe, mode); writes summary.md/json/png."""
    records = [json.loads(p.read_text()) for p in sorted(out_dir.glob("*__*.json"))]
    records = _at_common_budget(records)
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["backbone"], r["recipe"], r["mode"]), []).append(r)
    rows = []
    for (ds, bb, rec, mode), rs in sorted(groups.items()):
        scores = np.array([r["normalized_mean"] for r in rs], dtype=float)
        sps = [r["train_seconds_per_step"] for r in rs if r.get("train_seconds_per_step")]
        rows.append(
            {
                "dataset": ds,
                "backbone": bb,
                "recipe": rec,
                "mode": mode,
                "seeds": len(rs),
                "steps": rs[0]["steps"],
                "normalized_mean": float(scores.mean()),
                "normalized_std_over_seeds": float(scores.std(ddof=1)) if len(rs) > 1 else 0.0,
                "per_seed": [round(float(s), 1) for s in scores],
                "train_seconds_per_step": float(np.mean(sps)) if sps else None,
            }
        )
    _write_json(out_dir / "summary.json", rows)
    lines = [
        "| dataset | backbone | training recipe | acting mode | seeds | steps | normalised score (mean ± std over seeds) | per seed | train s/step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sps = f"{r['train_seconds_per_step']:.2f}" if r["train_seconds_per_step"] else "-"
        lines.append(
            f"| {r['dataset']} | {r['backbone']} | {r['recipe']} | {r['mode']} | {r['seeds']} | "
            f"{r['steps']} | {r['normalized_mean']:.1f} ± {r['normalized_std_over_seeds']:.1f} | "
            f"{', '.join(map(str, r['per_seed']))} | {sps} |"
        )
    table = "\n".join(lines)
    (out_dir / "summary.md").write_text(table + "\n")
    print(table)
    _plot(records, out_dir / "returns.png")
    return rows


def _at_common_budget(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Score every run at the same step budget: a run trained longer (a peer's) is read at
    the budget's point of its curve, when that point was scored with as many episodes."""
    steps = [r["steps"] for r in records]
    if not steps:
        return records
    budget = max(set(steps), key=steps.count)
    out = []
    for r in records:
        point = next((c for c in r.get("curve", []) if c["step"] == budget), None)
        if r["steps"] != budget and point is not None:
            r = {
                **r,
                "steps": budget,
                "normalized_mean": point["normalized_mean"],
                "note": f"read at step {budget} of a {r['steps']}-step run",
            }
        out.append(r)
    return out


def _plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in records})
    if not datasets:
        return
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.2), squeeze=False)
    labels = sorted(
        {f"{r['backbone']} / {r['recipe']} / {r['mode']}" for r in records if r.get("curve")}
    )
    colors = {label: f"C{i}" for i, label in enumerate(labels)}  # one colour per row, all panels
    for ax, ds in zip(axes[0], datasets):
        curves: dict[str, list[list[tuple[int, float]]]] = {}
        for r in records:
            if r["dataset"] == ds and r.get("curve"):
                label = f"{r['backbone']} / {r['recipe']} / {r['mode']}"
                curves.setdefault(label, []).append(
                    [(c["step"], c["normalized_mean"]) for c in r["curve"]]
                )
        for label, runs in sorted(curves.items()):
            steps = sorted({s for run in runs for s, _ in run})
            mean = [np.mean([v for run in runs for s, v in run if s == st]) for st in steps]
            std = [np.std([v for run in runs for s, v in run if s == st]) for st in steps]
            ax.errorbar(
                steps,
                mean,
                yerr=std,
                marker="o",
                capsize=3,
                color=colors[label],
                label=f"{label} (n={len(runs)})",
            )
        ax.set_title(ds)
        ax.set_xlabel("gradient steps")
        ax.set_ylabel("D4RL-normalised score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    import tyro

    cfg = tyro.cli(ReturnsConfig, args=argv)
    try:
        run_returns_bench(cfg)
    except RuntimeError as e:
        print(f"aaren-bench returns: {e}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
