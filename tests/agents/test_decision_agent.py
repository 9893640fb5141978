"""DecisionAgent: recurrent == window when the window holds the history; per-env resets; errors;
the memory horizon (a soft window computed on Aaren's constant-size state)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aaren_rl.aaren_policy.aaren import Aaren
from aaren_rl.aaren_policy.fused import memory_decay
from aaren_rl.agents import CheckpointError, DecisionAgent
from aaren_rl.agents.base import Agent
from aaren_rl.errors import ConfigError


@pytest.fixture
def make(make_agent):
    """Agents with obs_dim 4, act_dim 2 and non-trivial normalisation."""

    def _make(backbone: str = "aaren", mode: str = "recurrent", k: int = 64) -> DecisionAgent:
        return make_agent(
            backbone,
            mode,
            context_length=k,
            obs_dim=4,
            act_dim=2,
            init_std=None,
            state_mean=np.linspace(-1, 1, 4),
            state_std=np.linspace(0.5, 2, 4),
            return_scale=10.0,
            target_return=30.0,
        )

    return _make


def rollout(agent: DecisionAgent, steps: int, starts: dict[int, list[int]], n: int = 3):
    rng = np.random.default_rng(0)
    agent.reset(n)
    actions = []
    for t in range(steps):
        start = np.zeros(n, bool)
        start[starts.get(t, [])] = True
        actions.append(agent.predict(rng.normal(size=(n, 4)), rng.normal(size=n), start))
    return np.stack(actions)


@pytest.mark.parametrize("backbone", ["aaren", "transformer"])
def test_recurrent_equals_window_when_the_window_holds_the_history(backbone: str, make) -> None:
    # Envs restart at different times; no episode is longer than the window (64).
    starts = {0: [0, 1, 2], 11: [1], 25: [0, 2], 40: [1]}
    rec = rollout(make(backbone, "recurrent"), 50, starts)
    win = rollout(make(backbone, "window"), 50, starts)
    np.testing.assert_allclose(rec, win, atol=2e-6)


def test_window_mode_differs_once_the_history_outgrows_the_window(make) -> None:
    rec = rollout(make("aaren", "recurrent"), 30, {0: [0, 1, 2]})
    win = rollout(make("aaren", "window", k=5), 30, {0: [0, 1, 2]})
    np.testing.assert_allclose(rec[:5], win[:5], atol=2e-6)
    assert np.abs(rec[10:] - win[10:]).max() > 1e-4


def test_a_reset_restarts_only_its_own_env(make) -> None:
    a = rollout(make(), 20, {0: [0, 1, 2]})
    b = rollout(make(), 20, {0: [0, 1, 2], 12: [1]})
    np.testing.assert_array_equal(a[:, [0, 2]], b[:, [0, 2]])
    assert not np.allclose(a[12:, 1], b[12:, 1])


def test_a_restarted_env_acts_like_a_fresh_agent(make) -> None:
    rng = np.random.default_rng(1)
    obs, rew = rng.normal(size=(30, 1, 4)), rng.normal(size=(30, 1))
    agent = make()
    agent.reset(1)
    for t in range(10):
        agent.predict(obs[t], rew[t], np.array([t == 0]))
    replay = [agent.predict(obs[t], rew[t], np.array([t == 10])) for t in range(10, 30)]
    fresh = make()
    fresh.reset(1)
    first = [fresh.predict(obs[t], rew[t], np.array([t == 10])) for t in range(10, 30)]
    np.testing.assert_allclose(np.stack(replay), np.stack(first), atol=1e-6)


def test_return_to_go_bookkeeping(make) -> None:
    agent = make()
    agent.reset(2)
    obs = np.zeros((2, 4))
    agent.predict(obs, np.array([5.0, 5.0]), np.array([True, True]))  # reward ignored at start
    np.testing.assert_array_equal(agent.rtg, [30.0, 30.0])
    agent.predict(obs, np.array([2.0, 4.0]), np.array([False, False]))
    np.testing.assert_array_equal(agent.rtg, [28.0, 26.0])
    np.testing.assert_array_equal(agent.timestep, [1, 1])
    agent.predict(obs, np.array([1.0, 1.0]), np.array([False, True]))
    np.testing.assert_array_equal(agent.rtg, [27.0, 30.0])
    np.testing.assert_array_equal(agent.timestep, [2, 0])


def test_aaren_state_bytes_do_not_grow_the_kv_cache_does(make) -> None:
    for backbone, grows in (("aaren", False), ("transformer", True)):
        agent = make(backbone)
        agent.reset(1)
        agent.predict(np.zeros((1, 4)))
        first = agent.state_nbytes()
        for _ in range(50):
            agent.predict(np.zeros((1, 4)), np.zeros(1), np.zeros(1, bool))
        assert (agent.state_nbytes() > first) is grows


def test_actions_are_in_range_and_typed(make) -> None:
    agent = make()
    act = agent.predict(np.random.default_rng(0).normal(size=(3, 4)) * 100)
    assert act.shape == (3, 2) and act.dtype == np.float32
    assert np.all(np.abs(act) <= 1.0)


def test_bad_input(make) -> None:
    agent = make()
    agent.reset(2)
    with pytest.raises(ValueError, match="obs has shape"):
        agent.predict(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        agent.predict(np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="mode"):
        make(mode="cache")
    with pytest.raises(ConfigError, match="context length"):
        make(k=0)


@pytest.mark.parametrize("target", [float("nan"), float("inf"), "x"])
def test_a_target_return_that_is_not_a_number_is_refused(make_agent, target) -> None:
    with pytest.raises(ConfigError, match="target return must be a finite number"):
        make_agent("aaren", "recurrent", target_return=target)


def test_load_checks_overrides_before_reading(tmp_path) -> None:
    missing = tmp_path / "nothing-here"  # the flag is blamed, not the (missing) checkpoint
    with pytest.raises(ConfigError, match="context length"):
        DecisionAgent.load(missing, mode="window", context_length=0)
    with pytest.raises(ConfigError, match="target return"):
        DecisionAgent.load(missing, target_return=float("nan"))
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        DecisionAgent.load(missing)


def test_follows_the_agent_contract(make) -> None:
    assert isinstance(make(), Agent)


def test_kv_cache_holds_only_the_running_episodes(make) -> None:
    agent = make("transformer")
    agent.reset(1)
    sizes = []
    for _episode in range(3):
        for t in range(5):
            agent.predict(np.zeros((1, 4)), np.zeros(1), np.array([t == 0]))
        sizes.append(agent.state_nbytes())
    assert sizes[0] == sizes[1] == sizes[2]  # not growing across episodes
    assert agent.state[0].k.shape[2] == 15  # 5 steps x 3 tokens

    agent.reset(2)  # env 1 restarts at step 4: its old slots go once env 0 restarts too
    for t in range(10):
        agent.predict(np.zeros((2, 4)), np.zeros(2), np.array([t in (0, 8), t in (0, 4)]))
    # env 1's episode (steps 4..9) is the oldest still running: 6 steps x 3 tokens
    assert agent.state[0].k.shape[2] == 3 * 6
    valid = agent.state[0].valid
    assert valid[0].sum() == 3 * 2 and valid[1].sum() == 3 * 6


# ---- the memory horizon ---------------------------------------------------------------------


def _make_h(make_agent, mode: str = "recurrent", horizon: int = 0, k: int = 64) -> DecisionAgent:
    return make_agent(
        "aaren",
        mode,
        context_length=k,
        obs_dim=4,
        act_dim=2,
        init_std=0.3,
        state_mean=np.linspace(-1, 1, 4),
        state_std=np.linspace(0.5, 2, 4),
        return_scale=10.0,
        target_return=30.0,
        memory_horizon=horizon,
    )


def _rollout(agent: DecisionAgent) -> np.ndarray:
    return rollout(agent, 40, {0: [0, 1, 2], 13: [1], 29: [0, 2]})  # envs restart apart


def test_memory_horizon_is_exact_attention_with_an_age_penalty(make_agent, monkeypatch) -> None:
    """Recurrent acting with horizon H = softmax over the history of (score - age / H), age
    in timesteps (a_{t-1} counted with t): the reference is the window agent's parallel pass
    over the whole history with that penalty added to every layer's scores."""
    horizon = 4
    fused = _rollout(_make_h(make_agent, horizon=horizon))
    unfused_agent = _make_h(make_agent, horizon=horizon)
    unfused_agent.fused = False
    unfused = _rollout(unfused_agent)
    full = _rollout(_make_h(make_agent))

    scores_values = Aaren._scores_values

    def with_age(self: Aaren, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores, values = scores_values(self, x)
        # Tokens R_t, s_t, a_t at 3t, 3t+1, 3t+2 count as timesteps t, t, t + 1; a score
        # + g_j / H equals - age / H up to a constant per prefix (softmax cancels it).
        g = (torch.arange(x.shape[1], dtype=scores.dtype) + 1) // 3
        return scores + (g / horizon).unsqueeze(-1), values

    monkeypatch.setattr(Aaren, "_scores_values", with_age)
    reference = _rollout(_make_h(make_agent, mode="window"))  # the window holds every episode

    np.testing.assert_allclose(fused, reference, atol=2e-6)
    np.testing.assert_allclose(unfused, reference, atol=2e-6)
    assert np.abs(full - fused)[10:].max() > 1e-3  # the horizon changes the actions


def test_memory_horizon_zero_is_the_whole_episode(make_agent) -> None:
    assert memory_decay(0) == 0.0 and memory_decay(20) == pytest.approx(0.05)
    agent = _make_h(make_agent)
    assert agent.memory_horizon == 0 and "memory_horizon=whole episode" in repr(agent)
    np.testing.assert_array_equal(_rollout(agent), _rollout(_make_h(make_agent)))


def test_window_mode_and_transformers_ignore_it(make_agent) -> None:
    win = _rollout(_make_h(make_agent, mode="window", k=5, horizon=3))
    np.testing.assert_array_equal(win, _rollout(_make_h(make_agent, mode="window", k=5)))
    kv = make_agent("transformer", memory_horizon=3)
    kv_full = make_agent("transformer")
    rng = np.random.default_rng(0)
    obs, start = rng.normal(size=(1, 11)), np.ones(1, bool)
    kv.reset(1), kv_full.reset(1)
    for _ in range(5):
        np.testing.assert_array_equal(kv.predict(obs, np.zeros(1), start),
                                      kv_full.predict(obs, np.zeros(1), start))  # fmt: skip
        start = np.zeros(1, bool)


def test_checkpoints_keep_the_horizon_and_load_can_override_it(make_agent, tmp_path) -> None:
    ckpt = _make_h(make_agent, horizon=7).save(tmp_path / "ckpt")
    assert json.loads((ckpt / "agent.json").read_text())["memory_horizon"] == 7
    assert DecisionAgent.load(ckpt).memory_horizon == 7
    assert DecisionAgent.load(ckpt, memory_horizon=0).memory_horizon == 0
    # a checkpoint written before the option acts over the whole episode, as it did then
    meta = json.loads((ckpt / "agent.json").read_text())
    del meta["memory_horizon"]
    (ckpt / "agent.json").write_text(json.dumps(meta))
    assert DecisionAgent.load(ckpt).memory_horizon == 0
    meta["memory_horizon"] = -2
    (ckpt / "agent.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="memory horizon"):
        DecisionAgent.load(ckpt)


@pytest.mark.parametrize("bad", [-1, 2.5, True, "20"])
def test_a_bad_horizon_is_refused(make_agent, tmp_path, bad) -> None:
    with pytest.raises(ConfigError, match="memory horizon must be a whole number"):
        _make_h(make_agent, horizon=bad)
    with pytest.raises(ConfigError, match="memory horizon"):  # before the checkpoint is read
        DecisionAgent.load(tmp_path / "missing", memory_horizon=bad)
