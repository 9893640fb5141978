"""studies/horizon_choice.py: the pick of `aaren-finetune --memory-horizon choose`, alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from aaren_rl.errors import OutputPathError
from aaren_rl.train.finetune_cli import finetune
from aaren_rl.train.finetune_config import FinetuneConfig
from studies import horizon_choice
from studies.horizon_choice import Config, choices


def test_the_pick_is_the_one_fine_tuning_makes(aaren_checkpoint: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in aaren_checkpoint.parent.rglob("*"))
    kw = dict(candidates=(3, 7), episodes=2, max_episode_steps=30)
    got = choices(Config(checkpoint=aaren_checkpoint, out=tmp_path / "x.json", seeds=(0, 1), **kw))
    assert (
        sorted(p.name for p in aaren_checkpoint.parent.rglob("*")) == before
    )  # nothing written there
    run = finetune(
        FinetuneConfig(
            checkpoint=aaren_checkpoint,
            run_dir=tmp_path / "ft",
            seed=1,
            memory_horizon="choose",
            horizon_candidates=(3, 7),
            horizon_episodes=2,
            max_episode_steps=30,
            env_steps=1,
            num_envs=1,
            eval_episodes=0,
            seed_trajectories=0,
            threads=1,
            progress=False,
        )
    )
    assert got["1"] == run.summary["memory_horizon_choice"]
    assert set(got) == {"0", "1"} and set(got["0"]["validation_scores"]) == {"3", "7"}
    assert got["0"]["validation_seed"] != got["1"]["validation_seed"]


def test_main_writes_json_and_never_overwrites(
    aaren_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "choice.json"
    argv = ["x", "--checkpoint", str(aaren_checkpoint), "--out", str(out), "--seeds", "0"]
    argv += ["--candidates", "3", "7", "--episodes", "1", "--max-episode-steps", "20"]
    monkeypatch.setattr(sys, "argv", argv)
    horizon_choice.main()
    data = json.loads(out.read_text())
    assert data["checkpoint"] == str(aaren_checkpoint) and "avx2" in data["machine"]["cpu"]["flags"]
    assert data["choices"]["0"]["selection"] == "online"
    assert "seed 0: H = " in capsys.readouterr().out
    out.write_text("mine")
    with pytest.raises(OutputPathError, match="exists"):
        horizon_choice.main()
    assert out.read_text() == "mine"
