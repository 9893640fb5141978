"""How each offline horizon criterion would have chosen, over the evaluations of a results grid.

`aaren-bench returns --also-online` scores every Aaren checkpoint it evaluates three ways:
recurrently with the horizon chosen offline (by the default criterion), with the horizon
chosen online, and over the whole episode; each run's ``metrics.jsonl`` records every
criterion's held-out action errors for each candidate horizon. For each criterion this takes
the horizon it would have picked (``eval.offline_horizon.lowest_error_horizon``, the rule
the run itself chose by) and, where that horizon's score is known (it matches one of
the three scored choices), compares it with the online choice's score at the same
evaluation (docs/research/horizon.md, "Offline horizon selection").

A one-off study tool, not part of the installed package (run it from the repository root):

    python -m studies.horizon_criteria --work-dir runs/returns-10k-offline
    python -m studies.horizon_criteria --records docs/results/returns-10k-offline

The second reads the grid's result records instead of its run folders (which may be gone):
only the final evaluation, but every pair. For each Aaren run it gives each criterion's pick
at the final step, its score where the grid played that horizon, and the paired differences
against the online choice and the Transformer's window of the same dataset and seed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from aaren_rl.bench.returns_report import _mean_std, load_records
from aaren_rl.errors import ConfigError
from aaren_rl.eval.offline_horizon import lowest_error_horizon

ERROR_KEY = re.compile(r"^offline/(?P<criterion>[a-z-]+)_action_error_h(?P<h>\d+)$")


def criterion_picks(errors: dict[str, float]) -> dict[str, int]:
    """Each criterion's pick from one evaluation's ``offline/<criterion>_action_error_h<H>``
    entries (written in candidate order by the trainer's log): the lowest error, ties to
    the earlier candidate."""
    by_criterion: dict[str, dict[int, float]] = {}
    for key, value in errors.items():
        m = ERROR_KEY.match(key)
        if m and value is not None:
            by_criterion.setdefault(m["criterion"], {})[int(m["h"])] = float(value)
    return {c: lowest_error_horizon(errs) for c, errs in by_criterion.items()}


def known_scores(point: dict) -> dict[int, float]:
    """Scores of the horizons one grid evaluation played: the offline and online choices and
    the whole episode (H = 0)."""
    scores = {0: float(point["recurrent-full"]["normalized_mean"])}
    for mode in ("recurrent", "recurrent-online"):
        scores[int(point[mode]["memory_horizon"])] = float(point[mode]["normalized_mean"])
    return scores


def compare(run_dirs: list[Path]) -> dict[str, dict]:
    """Per criterion: evaluations with a known score for its pick, their mean, and the online
    choice's mean at the same evaluations."""
    pairs: dict[str, list[tuple[float, float]]] = {}
    total = 0
    for run in run_dirs:
        errors = {}
        for line in (run / "metrics.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if any(ERROR_KEY.match(k) for k in rec):
                errors[int(rec["step"])] = rec
        progress = json.loads((run / "grid-progress.json").read_text())
        for point in progress["curve"]:
            step = int(point["step"])
            if step not in errors or "recurrent-online" not in point:
                continue
            total += 1
            scores = known_scores(point)
            online = float(point["recurrent-online"]["normalized_mean"])
            for criterion, h in criterion_picks(errors[step]).items():
                if h in scores:
                    pairs.setdefault(criterion, []).append((scores[h], online))
    out = {}
    for criterion, values in sorted(pairs.items()):
        a = np.array(values)
        out[criterion] = {
            "evaluations": total,
            "known": len(a),
            "pick_mean": float(a[:, 0].mean()),
            "online_mean": float(a[:, 1].mean()),
        }
    return out


def _record_key(r: dict) -> tuple[str, int]:
    return str(r["dataset"]), int(r["seed"])


def final_step_pairs(records_dir: Path) -> list[dict]:
    """One row per Aaren run with an offline choice in the records of ``records_dir``: each
    criterion's pick at the final step and its score (None where the grid did not play that
    horizon), the online choice's score and the Transformer's window score (None if absent)."""
    recs = load_records(records_dir)  # the grid report's reader: summaries skipped
    by = {(r["backbone"], r["acting"], *_record_key(r)): r for r in recs}
    rows = []
    for (backbone, acting, dataset, seed), r in sorted(by.items()):
        choice = r.get("horizon_choice") or {}
        errors = choice.get("action_errors_by_criterion")
        if backbone != "aaren" or acting != "recurrent" or not errors:
            continue
        online = by.get(("aaren", "recurrent-online", dataset, seed))
        full = by.get(("aaren", "recurrent-full", dataset, seed))
        window = by.get(("transformer", "window", dataset, seed))
        scores = {int(r["memory_horizon"]): float(r["normalized_mean"])}
        if full:
            scores.setdefault(0, float(full["normalized_mean"]))
        if online:
            scores.setdefault(int(online["memory_horizon"]), float(online["normalized_mean"]))
        picks = {
            c: lowest_error_horizon({int(h): float(e) for h, e in errs.items()})
            for c, errs in sorted(errors.items())
        }
        rows.append(
            {
                "dataset": dataset,
                "seed": seed,
                "decided_by": choice.get("criterion"),
                "picks": picks,
                "pick_scores": {c: scores.get(h) for c, h in picks.items()},
                "online": float(online["normalized_mean"]) if online else None,
                "transformer_window": float(window["normalized_mean"]) if window else None,
            }
        )
    return rows


def _mean_diff(rows: list[dict], criterion: str, rival: str) -> tuple[float, float, int]:
    d = [
        r["pick_scores"][criterion] - r[rival]
        for r in rows
        if r["pick_scores"].get(criterion) is not None and r[rival] is not None
    ]
    if not d:
        return float("nan"), 0.0, 0
    return (*_mean_std(d), len(d))  # the sample std (ddof = 1), as the grid's report


def print_records(records_dir: Path) -> None:
    rows = final_step_pairs(records_dir)
    if not rows:
        raise ConfigError(f"{records_dir}: no Aaren record with an offline horizon choice")
    criteria = sorted({c for r in rows for c in r["picks"]})
    head = " | ".join(f"{c}: H, score" for c in criteria)
    print(f"| dataset | seed | decided by | {head} | online choice | Transformer window |")
    print("|---|---|---|" + "---|" * len(criteria) + "---|---|")

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1f}"

    for r in rows:
        cells = " | ".join(
            f"{r['picks'][c]}, {num(r['pick_scores'][c])}" if c in r["picks"] else "n/a"
            for c in criteria
        )
        print(
            f"| {r['dataset']} | {r['seed']} | {r['decided_by']} | {cells} | "
            f"{num(r['online'])} | {num(r['transformer_window'])} |"
        )
    print()
    print("| criterion | vs the online choice (mean ± std, pairs) | vs the Transformer's window |")
    print("|---|---|---|")
    for c in criteria:
        a, b = _mean_diff(rows, c, "online"), _mean_diff(rows, c, "transformer_window")
        print(f"| {c} | {a[0]:+.1f} ± {a[1]:.1f} ({a[2]}) | {b[0]:+.1f} ± {b[1]:.1f} ({b[2]}) |")


@dataclass
class Config:
    """Compare the offline horizon criteria over a results grid's Aaren runs."""

    work_dir: Path | None = None
    """The grid's --work-dir (one folder per run, with metrics.jsonl and grid-progress.json):
    every evaluation of the runs whose folders are there."""
    records: Path | None = None
    """The grid's --out-dir (its result records): the final evaluation of every pair."""


def main() -> None:
    cfg = tyro.cli(Config)
    if (cfg.work_dir is None) == (cfg.records is None):
        raise ConfigError("give one of --work-dir and --records")
    if cfg.records is not None:
        print_records(cfg.records)
        return
    runs = sorted(
        d
        for d in cfg.work_dir.glob("*__aaren__*")
        if (d / "metrics.jsonl").is_file() and (d / "grid-progress.json").is_file()
    )
    if not runs:
        raise ConfigError(f"{cfg.work_dir}: no Aaren run with metrics.jsonl and grid-progress.json")
    print(f"{len(runs)} runs: " + ", ".join(d.name for d in runs))
    print("| criterion | evaluations with a known score | its pick | the online choice |")
    print("|---|---|---|---|")
    for criterion, r in compare(runs).items():
        print(
            f"| {criterion} | {r['known']} of {r['evaluations']} | {r['pick_mean']:.1f} | "
            f"{r['online_mean']:.1f} |"
        )


if __name__ == "__main__":
    main()
