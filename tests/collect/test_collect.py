"""A real (tiny) aaren-collect run on Hopper-v5: PPO for 4096 steps, interrupted and resumed."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tyro

from aaren_rl.collect.collect import LEVELS, Args, Collector, PolicyAgent, collect, main, record
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

    real_checkpoint = Collector.checkpoint

    def checkpoint_then_ctrl_c(self, model, venv):  # Ctrl-C right after the 1st checkpoint
        real_checkpoint(self, model, venv)
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Collector, "checkpoint", checkpoint_then_ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            collect(args)
    state = json.loads((tmp_path / "work" / "state.json").read_text())
    assert [c["step"] for c in state["checkpoints"]] == [2048]
    assert not (tmp_path / "h5").exists() and not list(_offline_minari.glob("aaren/*-v0"))

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


def test_policy_agent_follows_the_agent_contract():
    from aaren_rl.agents.base import Agent

    agent = PolicyAgent(lambda obs: np.zeros((len(obs), 3)))
    assert isinstance(agent, Agent)
    out = agent.predict(np.zeros((2, 11)))
    assert out.shape == (2, 3) and out.dtype == np.float32


def test_record_cuts_to_the_budget_and_closes_the_last_episode():
    rng = np.random.default_rng(0)
    policy = lambda o: rng.uniform(-1, 1, (len(o), 3))  # noqa: E731
    data = record("Hopper-v5", policy, num_envs=2, seed=0, transitions=25)
    assert len(data["rewards"]) == 25
    assert data["timeouts"][-1] or data["terminals"][-1]
    ends = data["terminals"] | data["timeouts"]
    assert ends.sum() >= 2  # each env's stream is closed (env 0's cut, then the final cut)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--total-timesteps", "0"], "--total-timesteps must be >= 1, got 0"),
        (["--medium-fraction", "nan"], "--medium-fraction must be in (0, 1]"),
        (["--levels"], "--levels is empty"),
        (["--no-minari"], "nothing to write"),
    ],
)
def test_bad_flags_fail_before_a_work_dir_exists(tmp_path: Path, capsys, flags, message):
    work = tmp_path / "work"
    assert main(["--work-dir", str(work), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not work.exists()
