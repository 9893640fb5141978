"""studies/horizon_criteria.py: each offline criterion's pick, scored where the grid played it."""

from __future__ import annotations

import json
from pathlib import Path

from studies.horizon_criteria import compare, criterion_picks, final_step_pairs


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


def _record(dataset: str, backbone: str, acting: str, seed: int, score: float, **kw) -> dict:
    return {"dataset": dataset, "backbone": backbone, "acting": acting, "seed": seed,
            "normalized_mean": score, **kw}  # fmt: skip


def test_final_step_pairs_from_the_records(tmp_path: Path) -> None:
    errors = {
        "own-actions": {"0": 0.1, "10": 0.2, "20": 0.3, "40": 0.4},
        "target-return": {"0": 0.4, "10": 0.3, "20": 0.2, "40": 0.3},
        "teacher-forced": {"0": 0.4, "10": 0.1, "20": 0.2, "40": 0.3},
    }
    choice = {"selection": "offline", "criterion": "target-return",
              "action_errors_by_criterion": errors}  # fmt: skip
    recs = [
        _record("hm", "aaren", "recurrent", 0, 60.0, memory_horizon=20, horizon_choice=choice),
        _record("hm", "aaren", "recurrent-online", 0, 90.0, memory_horizon=40),
        _record("hm", "aaren", "recurrent-full", 0, 50.0, memory_horizon=0),
        _record("hm", "transformer", "window", 0, 70.0),
        _record("hm", "aaren", "recurrent", 1, 80.0, memory_horizon=0, horizon_choice={}),
    ]
    for i, r in enumerate(recs):
        (tmp_path / f"r{i}.json").write_text(json.dumps(r))
    (tmp_path / "summary.json").write_text("[]")  # not a record: skipped
    (row,) = final_step_pairs(tmp_path)  # seed 1 has no offline errors: no row
    assert row["picks"] == {"own-actions": 0, "target-return": 20, "teacher-forced": 10}
    # H = 0 scored by the whole-episode record, 20 by the offline one, 10 never played
    assert row["pick_scores"] == {"own-actions": 50.0, "target-return": 60.0,
                                  "teacher-forced": None}  # fmt: skip
    assert (row["online"], row["transformer_window"], row["decided_by"]) == (
        90.0, 70.0, "target-return"
    )  # fmt: skip
