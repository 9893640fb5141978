"""studies/horizon_criteria.py: each offline criterion's pick, scored where the grid played it."""

from __future__ import annotations

import json
from pathlib import Path

from studies.horizon_criteria import compare, criterion_picks


def _errors(step: int, **by_criterion: tuple[float, float, float, float]) -> dict:
    rec: dict = {"step": step, "offline/memory_horizon": 20}
    for name, errs in by_criterion.items():
        for h, e in zip((0, 10, 20, 40), errs, strict=True):
            rec[f"offline/{name.replace('_', '-')}_action_error_h{h}"] = e
    return rec


def _point(step: int, offline: tuple[int, float], online: tuple[int, float], full: float) -> dict:
    return {
        "step": step,
        "recurrent": {"memory_horizon": offline[0], "normalized_mean": offline[1]},
        "recurrent-online": {"memory_horizon": online[0], "normalized_mean": online[1]},
        "recurrent-full": {"normalized_mean": full},
    }


def test_picks_take_the_lowest_error_and_the_earlier_on_ties() -> None:
    rec = _errors(1000, own_actions=(0.3, 0.2, 0.2, 0.4), target_return=(0.1, 0.2, 0.3, 0.4))
    rec["train/loss"] = 1.0  # other keys are ignored
    assert criterion_picks(rec) == {"own-actions": 10, "target-return": 0}


def test_compare_scores_only_picks_the_grid_played(tmp_path: Path) -> None:
    run = tmp_path / "hopper-medium__aaren__episode__s0"
    run.mkdir()
    lines = [
        _errors(1000, own_actions=(0.1, 0.2, 0.3, 0.4), target_return=(0.4, 0.3, 0.2, 0.1)),
        {"step": 1000, "train/loss": 0.5},
        _errors(2000, own_actions=(0.4, 0.1, 0.3, 0.4), target_return=(0.4, 0.3, 0.1, 0.2)),
    ]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    curve = [
        _point(1000, offline=(40, 70.0), online=(20, 90.0), full=50.0),
        _point(2000, offline=(20, 60.0), online=(20, 60.0), full=80.0),
        {"step": 3000, "recurrent": {"memory_horizon": 0, "normalized_mean": 1.0}},  # no online
    ]
    (run / "grid-progress.json").write_text(json.dumps({"curve": curve}))
    out = compare([run])
    # own-actions: H = 0 at 1k (the whole episode, 50) and H = 10 at 2k (not played)
    assert out["own-actions"] == {
        "evaluations": 2, "known": 1, "pick_mean": 50.0, "online_mean": 90.0
    }  # fmt: skip
    # target-return: H = 40 at 1k (70) and H = 20 at 2k (60)
    assert out["target-return"] == {
        "evaluations": 2, "known": 2, "pick_mean": 65.0, "online_mean": 75.0
    }  # fmt: skip
