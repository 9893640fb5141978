"""SamplingAgent: the fused O(1) sampling step equals the unfused one, the noise is seeded per
episode (layout-free), and actions are samples around the deterministic action."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aaren_rl.aaren_policy.stochastic import StochasticPolicy, tanh_gaussian_sample
from aaren_rl.agents.sampling_agent import SamplingAgent


def _agent(
    make_agent, backbone: str, mode: str = "recurrent", init_std: float = 0.1, seed: int = 0
):
    base = make_agent(backbone, mode=mode)
    policy = StochasticPolicy(base.model, init_std=init_std)
    return SamplingAgent(
        policy,
        base.state_mean,
        base.state_std,
        1000.0,
        3600.0,
        mode=mode,
        context_length=4,
        seed=seed,
    )


def _run(agent, obs: np.ndarray, seeds: list[int]) -> np.ndarray:
    """Feed a fixed observation sequence (T, N, obs_dim); episodes seeded by ``seeds``."""
    agent.reset(obs.shape[1])
    for j, s in enumerate(seeds):
        agent.begin_episode(j, s)
    out = []
    for t in range(obs.shape[0]):
        start = np.full(obs.shape[1], t == 0)
        out.append(agent.predict(obs[t], np.full(obs.shape[1], 0.5), start))
    return np.stack(out)


@pytest.fixture
def observations() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(7, 2, 11)).astype(np.float32)


def test_actions_are_tanh_gaussian_samples_with_the_slot_noise(make_agent, observations) -> None:
    agent = _agent(make_agent, "aaren", init_std=0.2)
    agent.reset(2)
    agent.begin_episode(0, 7)
    agent.begin_episode(1, 8)
    action = agent.predict(observations[0], None, np.ones(2, bool))
    noise = np.stack(
        [np.random.default_rng([0, s]).standard_normal(3, dtype=np.float32) for s in (7, 8)]
    )
    y, _ = agent.model.act_features(
        torch.from_numpy(observations[0]), torch.full((2, 1), 3.6), torch.zeros(2, dtype=torch.long)
    )
    out = agent.policy.heads(y)
    want = tanh_gaussian_sample(out.mean, out.log_std, torch.from_numpy(noise))[0]
    np.testing.assert_allclose(action, want.detach().numpy(), atol=1e-5)


def test_fused_sampling_step_equals_the_unfused_one(make_agent, observations) -> None:
    fused = _agent(make_agent, "aaren")
    assert fused.fused
    plain = _agent(make_agent, "aaren")
    plain.fused = False
    a, b = _run(fused, observations, [5, 6]), _run(plain, observations, [5, 6])
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(("backbone", "mode"), [("aaren", "recurrent"), ("transformer", "window")])
def test_noise_is_seeded_per_episode_not_per_slot(make_agent, observations, backbone, mode) -> None:
    agent = _agent(make_agent, backbone, mode)
    both = _run(agent, observations, [11, 12])
    swapped = _run(agent, observations[:, ::-1], [12, 11])[:, ::-1]
    np.testing.assert_allclose(both, swapped, atol=1e-6)
    other = _run(agent, observations, [13, 12])
    assert not np.allclose(other[:, 0], both[:, 0]) and np.allclose(
        other[:, 1], both[:, 1], atol=1e-6
    )


@pytest.mark.parametrize("backbone", ["aaren", "transformer"])
def test_samples_spread_around_the_deterministic_action(make_agent, backbone) -> None:
    obs = np.random.default_rng(1).normal(size=(1, 64, 11)).astype(np.float32)
    obs = np.repeat(obs[:, :1], 64, axis=1)  # 64 envs, the same first observation
    agent = _agent(make_agent, backbone, init_std=0.05)
    det = make_agent(backbone)
    det.reset(64)
    mean_action = det.predict(obs[0])[0]
    samples = _run(agent, obs, list(range(64)))[0]
    assert samples.std(0).min() > 1e-3  # they differ
    assert np.abs(samples.mean(0) - mean_action).max() < 0.05  # around tanh(mean)
    assert torch.isfinite(torch.from_numpy(samples)).all() and np.abs(samples).max() < 1
