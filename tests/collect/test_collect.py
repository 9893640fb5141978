"""A real (tiny) aaren-collect run on Hopper-v5: PPO for 4096 steps, interrupted and resumed."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tyro

from aaren_rl.collect.collect import LEVELS, Args, collect
from aaren_rl.envs import load_dataset


def test_cli_parses_defaults():
    args = tyro.cli(
        Args, args=["--env", "walker2d", "--hdf5-dir", "out", "--levels", "medium", "medium-replay"]
    )
    assert args.algo == "ppo" and args.levels == ("medium", "medium-replay")
    assert args.run_dir == Path("runs/collect/walker2d-ppo-s0")


@pytest.mark.slow
def test_real_collection_interrupt_resume_and_outputs(tmp_path: Path, monkeypatch, _offline_minari):
    sb3_tmp = tmp_path / "systmp"
    sb3_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(sb3_tmp))  # where SB3 would drop SB3-* folders
    args = Args(env="hopper", total_timesteps=4096, eval_every=2048, eval_episodes=2,
                transitions=1500, num_envs=2, ppo_n_steps=512, rollout_envs=4,
                work_dir=tmp_path / "work", hdf5_dir=tmp_path / "h5")  # fmt: skip

    monkeypatch.setenv("AAREN_COLLECT_STOP_AFTER", "1")  # simulate Ctrl-C after 1st checkpoint
    with pytest.raises(KeyboardInterrupt):
        collect(args)
    state = json.loads((tmp_path / "work" / "state.json").read_text())
    assert [c["step"] for c in state["checkpoints"]] == [2048]
    assert not (tmp_path / "h5").exists() and not list(_offline_minari.glob("aaren/*-v0"))

    monkeypatch.delenv("AAREN_COLLECT_STOP_AFTER")
    results = collect(args)  # resumes from step 2048, does not start over
    state = json.loads((tmp_path / "work" / "state.json").read_text())
    assert [c["step"] for c in state["checkpoints"]] == [2048, 4096]
    assert state["segment"] == 1
    assert not list(sb3_tmp.glob("SB3-*"))  # SB3 got our logger: no SB3-* temp folders

    for level in LEVELS:
        m = load_dataset(f"minari:aaren/hopper-{level}-v0")
        h = load_dataset(f"d4rl:{tmp_path / 'h5' / f'hopper-{level}.hdf5'}")
        assert m.num_transitions == h.num_transitions == results[level]["transitions"]
        np.testing.assert_allclose(m.episode_returns, h.episode_returns, rtol=1e-5)
        np.testing.assert_allclose(
            h.metadata["episode_return_mean"], h.episode_returns.mean(), rtol=1e-5
        )
        assert h.env_id == "Hopper-v5" and "PPO" in h.metadata["behavior_algorithm"]
        assert [c["step"] for c in h.metadata["checkpoints"]] == [2048, 4096]
        assert h.metadata["ref_max_score"] == 3234.3
        assert m.metadata["aaren"]["level"] == level
    med_step = results["medium"]["medium_step"]
    assert results["medium-replay"]["transitions"] == med_step  # every training step up to it
    assert results["medium-expert"]["transitions"] == 3000
    assert results["random"]["transitions"] == 1500

    again = collect(args)  # a finished collection reruns as a no-op (cached, skipped)
    assert again["medium"]["episode_return_mean"] == results["medium"]["episode_return_mean"]
