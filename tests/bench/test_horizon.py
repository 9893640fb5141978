"""aaren-bench horizon: scores per memory horizon, with the grid's evaluation protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aaren_rl.bench.cli import main
from aaren_rl.bench.horizon import HorizonConfig, run_horizon
from aaren_rl.errors import ConfigError


def test_scores_each_horizon_and_the_window(make_agent, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ckpt = make_agent("aaren", memory_horizon=20).save(run / "checkpoint")
    (run / "config.json").write_text(json.dumps({"seed": 2}))  # as aaren-train writes it
    cfg = HorizonConfig((ckpt,), horizons=(3, 0), episodes=2, num_envs=2, out=tmp_path / "out")
    data = run_horizon(cfg)
    assert [r["acting"] for r in data["records"]] == ["window", "recurrent H=3", "recurrent-full"]
    assert [r["memory_horizon"] for r in data["records"]] == [None, 3, 0]
    assert {r["train_seed"] for r in data["records"]} == {2}
    h3, full = data["records"][1:]
    assert h3["normalized_mean"] != full["normalized_mean"]  # the horizon changes the actions
    assert [r["checkpoints"] for r in data["summary"]] == [1, 1, 1]
    assert json.loads((tmp_path / "out" / "horizon.json").read_text())["summary"]
    assert (tmp_path / "out" / "horizon.png").stat().st_size > 0


def test_refuses_what_it_cannot_score(make_agent, tmp_path: Path, capsys) -> None:
    tf = make_agent("transformer").save(tmp_path / "tf")
    with pytest.raises(ConfigError, match="not an Aaren checkpoint"):
        run_horizon(HorizonConfig((tf,), out=tmp_path / "out"))
    with pytest.raises(ConfigError, match="--horizons must be"):
        run_horizon(HorizonConfig((tf,), horizons=(-1,), out=tmp_path / "out"))
    assert main(["horizon", "--checkpoints", str(tmp_path / "none")]) == 2
    assert "no agent.json" in capsys.readouterr().err


def test_offline_criteria_beside_the_env_scores(tiny_hopper_dataset: Path, tmp_path: Path) -> None:
    """A checkpoint trained with offline selection: the action errors per H on its held-out
    episodes, each criterion's pick and the env score of that pick."""
    from aaren_rl.train.cli import main as train

    run = tmp_path / "run"
    args = ["--dataset", f"d4rl:{tiny_hopper_dataset}", "--steps", "3", "--run-dir", str(run),
            "--eval-episodes", "0", "--model.dim", "16", "--model.num-layers", "1",
            "--threads", "1", "--no-progress"]  # fmt: skip
    assert train(args) == 0
    cfg = HorizonConfig((run / "checkpoint",), horizons=(3, 0), window=False, episodes=1,
                        num_envs=1, out=tmp_path / "out")  # fmt: skip
    data = run_horizon(cfg)
    (row,) = data["offline"]
    meta = json.loads((run / "checkpoint" / "agent.json").read_text())
    assert row["heldout_episodes"] == meta["horizon_selection"]["heldout_episodes"]
    assert set(row["action_errors"]) == {
        f"{c}, {s}"
        for c in ("own-actions", "teacher-forced", "target-return")
        for s in ("top", "all")
    }
    env = {r["memory_horizon"]: r["normalized_mean"] for r in data["records"]}
    for name, errs in row["action_errors"].items():
        assert set(errs) == {"3", "0"}
        pick = row["picks"][name]
        assert errs[str(pick)] == min(errs.values())
        assert row["env_score_of_pick"][name] == env[pick]
    assert row["env_best_score"] == max(env.values())
    assert json.loads((tmp_path / "out" / "horizon.json").read_text())["offline"] == [row]
