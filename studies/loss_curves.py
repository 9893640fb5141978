"""Training-loss curves of runs grouped by a config field (e.g. fp32 vs bf16), from metrics.jsonl.

Each run directory written by ``aaren-train`` holds ``config.json`` and ``metrics.jsonl``; runs
are grouped by (backbone, the chosen field) and drawn as mean ± std over their seeds, one
panel per backbone. A JSON file beside the plot holds the curves and, per group, the mean
final loss, so that "the curves agree within seed noise" can be read as numbers (a one-off
study tool, not part of the installed package; run it from the repository root)::

    python -m studies.loss_curves --runs runs/prec/* --field precision \\
        --out docs/results/precision/loss
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from aaren_rl.bench.plots import plt, save_figure
from aaren_rl.errors import ConfigError
from aaren_rl.fileio import atomic_write_json


def read_run(run: Path, key: str) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """(config, steps, losses) of one run directory."""
    cfg_path, metrics = run / "config.json", run / "metrics.jsonl"
    if not cfg_path.is_file() or not metrics.is_file():
        raise ConfigError(f"{run}: not an aaren-train run directory (no config.json/metrics.jsonl)")
    cfg = json.loads(cfg_path.read_text())
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if key in r]
    return cfg, np.array([r["step"] for r in rows]), np.array([r[key] for r in rows])


def group_curves(runs: list[Path], group_by: str, key: str) -> dict[str, dict[str, Any]]:
    """``{"backbone / value": {"steps", "mean", "std", "seeds", "final_mean", "final_std"}}``."""
    groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for run in runs:
        cfg, steps, losses = read_run(run, key)
        groups.setdefault(f"{cfg['backbone']} / {cfg.get(group_by)}", []).append((steps, losses))
    out = {}
    for name, curves in sorted(groups.items()):
        n = min(len(s) for s, _ in curves)  # common prefix (runs of one group share a schedule)
        losses = np.stack([loss[:n] for _, loss in curves])
        final = losses[:, -1]
        out[name] = {
            "steps": curves[0][0][:n].tolist(),
            "mean": losses.mean(0).tolist(),
            "std": losses.std(0).tolist(),
            "seeds": len(curves),
            "final_mean": float(final.mean()),
            "final_std": float(final.std()),
        }
    return out


@dataclass
class LossCurvesArgs:
    """Plot training-loss curves of aaren-train runs, grouped by a config field."""

    runs: list[Path] = field(default_factory=list)
    """aaren-train run directories."""
    field: str = "precision"
    """config.json field whose values are compared (precision, loss_reduction, ...)."""
    key: str = "train/loss"
    """Metric in metrics.jsonl."""
    out: Path = Path("runs/bench/loss")
    """Output stem: writes OUT.png and OUT.json."""


def main() -> None:
    args = tyro.cli(LossCurvesArgs)
    if not args.runs:
        raise SystemExit("loss_curves: give --runs DIR ...")
    curves = group_curves(args.runs, args.field, args.key)
    backbones = sorted({name.split(" / ")[0] for name in curves})
    fig, axes = plt.subplots(1, len(backbones), figsize=(5.5 * len(backbones), 4), squeeze=False)
    for ax, bb in zip(axes[0], backbones, strict=True):
        for name, c in curves.items():
            if name.startswith(f"{bb} / "):
                m, s = np.array(c["mean"]), np.array(c["std"])
                label = f"{name.split(' / ')[1]} ({c['seeds']} seeds)"
                ax.plot(c["steps"], m, label=label)
                ax.fill_between(c["steps"], m - s, m + s, alpha=0.25)
        ax.set(title=bb, xlabel="gradient step", ylabel=args.key)
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, args.out.with_suffix(".png"), f"{args.key} by {args.field}")
    atomic_write_json(args.out.with_suffix(".json"), curves)
    for name, c in curves.items():
        print(f"{name}: final {args.key} {c['final_mean']:.4f} ± {c['final_std']:.4f}")


if __name__ == "__main__":
    main()
