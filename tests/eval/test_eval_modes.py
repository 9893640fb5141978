"""Recurrent and window acting agree when the window covers the whole history."""

from __future__ import annotations

import numpy as np
import pytest

from aaren_rl.eval.rollout import evaluate

T = 15


@pytest.mark.parametrize("backbone", ["aaren", "transformer"])
def test_actions_agree_step_by_step(make_agent, backbone):
    rec = make_agent(backbone, "recurrent")
    win = make_agent(backbone, "window", context_length=T)
    rng = np.random.default_rng(0)
    rec.reset(2)
    win.reset(2)
    for t in range(T):
        obs = rng.standard_normal((2, 11))
        reward = rng.standard_normal(2)
        start = np.array([t == 0, t in (0, 7)])  # env 1 restarts mid-way
        a_rec = rec.predict(obs, reward, start)
        a_win = win.predict(obs, reward, start)
        np.testing.assert_allclose(a_rec, a_win, atol=2e-5, err_msg=f"t={t}")
    assert np.abs(a_rec).max() > 0.05  # actions are not trivially 0


@pytest.mark.parametrize("backbone", ["aaren", "transformer"])
def test_same_returns_through_evaluate(make_agent, backbone):
    kw = dict(episodes=2, num_envs=2, seed=5, max_episode_steps=T)
    rec = evaluate(make_agent(backbone, "recurrent"), "hopper", **kw)
    win = evaluate(make_agent(backbone, "window", context_length=T), "hopper", **kw)
    assert rec.mode == "recurrent" and win.mode == "window"
    assert rec.lengths == win.lengths
    np.testing.assert_allclose(rec.returns, win.returns, rtol=1e-4)
