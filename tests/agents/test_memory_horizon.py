"""Acting with a memory horizon: a soft window computed on Aaren's constant-size state."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aaren_rl.aaren_policy.aaren import Aaren
from aaren_rl.aaren_policy.fused import memory_decay
from aaren_rl.agents import CheckpointError, DecisionAgent
from aaren_rl.errors import ConfigError


def _make(make_agent, mode: str = "recurrent", horizon: int = 0, k: int = 64) -> DecisionAgent:
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


def _rollout(agent: DecisionAgent, steps: int = 40, n: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    starts = {0: [0, 1, 2], 13: [1], 29: [0, 2]}  # envs restart at different times
    agent.reset(n)
    actions = []
    for t in range(steps):
        start = np.zeros(n, bool)
        start[starts.get(t, [])] = True
        actions.append(agent.predict(rng.normal(size=(n, 4)), rng.normal(size=n), start))
    return np.stack(actions)


def test_memory_horizon_is_exact_attention_with_an_age_penalty(make_agent, monkeypatch) -> None:
    """Recurrent acting with horizon H = softmax over the history of (score - age / H), age
    in timesteps (a_{t-1} counted with t): the reference is the window agent's parallel pass
    over the whole history with that penalty added to every layer's scores."""
    horizon = 4
    fused = _rollout(_make(make_agent, horizon=horizon))
    unfused_agent = _make(make_agent, horizon=horizon)
    unfused_agent.fused = False
    unfused = _rollout(unfused_agent)
    full = _rollout(_make(make_agent))

    scores_values = Aaren._scores_values

    def with_age(self: Aaren, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores, values = scores_values(self, x)
        # Tokens R_t, s_t, a_t at 3t, 3t+1, 3t+2 count as timesteps t, t, t + 1; a score
        # + g_j / H equals - age / H up to a constant per prefix (softmax cancels it).
        g = (torch.arange(x.shape[1], dtype=scores.dtype) + 1) // 3
        return scores + (g / horizon).unsqueeze(-1), values

    monkeypatch.setattr(Aaren, "_scores_values", with_age)
    reference = _rollout(_make(make_agent, mode="window"))  # the window holds every episode

    np.testing.assert_allclose(fused, reference, atol=2e-6)
    np.testing.assert_allclose(unfused, reference, atol=2e-6)
    assert np.abs(full - fused)[10:].max() > 1e-3  # the horizon changes the actions


def test_memory_horizon_zero_is_the_whole_episode(make_agent) -> None:
    assert memory_decay(0) == 0.0 and memory_decay(20) == pytest.approx(0.05)
    agent = _make(make_agent)
    assert agent.memory_horizon == 0 and "memory_horizon=whole episode" in repr(agent)
    np.testing.assert_array_equal(_rollout(agent), _rollout(_make(make_agent)))


def test_window_mode_and_transformers_ignore_it(make_agent) -> None:
    win = _rollout(_make(make_agent, mode="window", k=5, horizon=3))
    np.testing.assert_array_equal(win, _rollout(_make(make_agent, mode="window", k=5)))
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
    ckpt = _make(make_agent, horizon=7).save(tmp_path / "ckpt")
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
        _make(make_agent, horizon=bad)
    with pytest.raises(ConfigError, match="memory horizon"):  # before the checkpoint is read
        DecisionAgent.load(tmp_path / "missing", memory_horizon=bad)
