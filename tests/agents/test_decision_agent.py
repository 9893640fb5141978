"""DecisionAgent: recurrent == window when the window holds the history; per-env resets; errors."""

from __future__ import annotations

import numpy as np
import pytest

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
