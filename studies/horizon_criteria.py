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
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

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


@dataclass
class Config:
    """Compare the offline horizon criteria over a results grid's Aaren runs."""

    work_dir: Path
    """The grid's --work-dir (one folder per run, with metrics.jsonl and grid-progress.json)."""


def main() -> None:
    cfg = tyro.cli(Config)
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
