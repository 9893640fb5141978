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
