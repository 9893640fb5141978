"""FusedAarenPolicy == DecisionModel.act/observe_action == the parallel forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aaren_rl.aaren_policy import BackboneConfig, DecisionModel, DecisionModelConfig
from aaren_rl.aaren_policy.fused import FusedAarenPolicy
from aaren_rl.agents import DecisionAgent

OBS, ACT = 5, 2


def _model(
    heads: int = 1, dtype: torch.dtype = torch.float32, seed: int = 0, **kw
) -> DecisionModel:
    torch.manual_seed(seed)
    net = BackboneConfig(dim=16, num_layers=3, num_heads=heads, dropout=0.1)
    model = DecisionModel(DecisionModelConfig(OBS, ACT, net=net, **kw)).eval().to(dtype)
    with torch.no_grad():  # leave the init (zero biases, unit LayerNorm): test every weight
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def _cast(state: tuple, dtype: torch.dtype) -> tuple:
    return tuple(type(s)(*(t.to(dtype) for t in s)) for s in state)


@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_fused_step_equals_act_observe(heads: int, dtype: torch.dtype, tol: float) -> None:
    model = _model(heads, dtype, max_timestep=20)  # t runs past max_timestep: clamped alike
    policy = FusedAarenPolicy(model)
    b = 3
    ref = _cast(model.init_state(b), dtype)
    st = policy.init_state(b)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in range(30):
            obs = torch.randn(b, OBS, generator=gen, dtype=dtype)
            rtg = torch.randn(b, 1, generator=gen, dtype=dtype)
            time = torch.full((b,), t)
            a_ref, after_act = model.act(obs, rtg, time, ref)
            ref = model.observe_action(a_ref, time, after_act)
            a, st = policy(obs, rtg, time, st)
            torch.testing.assert_close(a, a_ref, atol=tol, rtol=0)
    # The fused state is the recurrent state before the (deferred) action token.
    for name in ("m", "u", "w"):
        want = torch.stack([getattr(s, name) for s in after_act], dim=1)  # (B, L, H, ...)
        torch.testing.assert_close(getattr(st, name), want, atol=tol, rtol=tol)
    torch.testing.assert_close(st.action, a_ref)
    assert st.m.shape == (b, 3, heads) and st.w.shape == (b, 3, heads, 16 // heads)


def test_fused_step_equals_parallel_forward() -> None:
    model = _model(2, torch.float64)
    policy = FusedAarenPolicy(model)
    b, k = 2, 13
    gen = torch.Generator().manual_seed(2)
    obs = torch.randn(b, k, OBS, generator=gen, dtype=torch.float64)
    rtg = torch.randn(b, k, 1, generator=gen, dtype=torch.float64)
    times = torch.arange(k).expand(b, k)
    st = policy.init_state(b)
    actions = []
    with torch.no_grad():
        for t in range(k):
            a, st = policy(obs[:, t], rtg[:, t], times[:, t], st)
            actions.append(a)
        actions = torch.stack(actions, 1)  # (B, K, A)
        preds, state = model(rtg, obs, actions, times)
    torch.testing.assert_close(actions, preds, atol=1e-10, rtol=0)


def test_reset_rows_and_masked_first_action() -> None:
    model = _model()
    policy = FusedAarenPolicy(model)
    gen = torch.Generator().manual_seed(3)
    obs, rtg = torch.randn(2, OBS, generator=gen), torch.randn(2, 1, generator=gen)
    t0 = torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        a0, st = policy(obs, rtg, t0, policy.init_state(2))
        _, st = policy(obs, rtg, t0 + 1, st)
        st = policy.reset_state(st, torch.tensor([True, False]))
        a_again, _ = policy(obs, rtg, t0, st)
    torch.testing.assert_close(a_again[0], a0[0])  # a reset row acts as at t = 0
    assert not torch.allclose(a_again[1], a0[1])
    assert torch.isfinite(a0).all()


def test_transformer_is_refused() -> None:
    torch.manual_seed(0)
    model = DecisionModel(DecisionModelConfig(OBS, ACT, backbone="transformer"))
    with pytest.raises(ValueError, match="grows with t"):
        FusedAarenPolicy(model)


def test_agent_fused_equals_unfused_with_resets() -> None:
    model = _model()
    mean, std = np.full(OBS, 0.1), np.full(OBS, 2.0)
    fused = DecisionAgent(model, mean, std, 100.0, 50.0)
    plain = DecisionAgent(model, mean, std, 100.0, 50.0, fused=False)
    assert fused.fused and not plain.fused
    rng = np.random.default_rng(0)
    for t in range(40):
        obs = rng.standard_normal((3, OBS))
        reward = rng.standard_normal(3)
        start = np.array([t == 0, t % 7 == 0, t == 25])
        a1 = fused.predict(obs, reward, start)
        a2 = plain.predict(obs, reward, start)
        np.testing.assert_allclose(a1, a2, atol=1e-5, rtol=0)
    assert 0 < fused.state_nbytes() < 4096


def test_agent_rebuilds_fused_policy_after_weights_change() -> None:
    model = _model()
    agent = DecisionAgent(model, np.zeros(OBS), np.ones(OBS), 100.0, 50.0)
    obs = np.ones((1, OBS))
    before = agent.predict(obs, None, np.array([True]))
    with torch.no_grad():
        model.action_head[0].bias.add_(1.0)  # an in-place update, like an optimiser step
    after = agent.predict(obs, None, np.array([True]))
    ref = DecisionAgent(model, np.zeros(OBS), np.ones(OBS), 100.0, 50.0, fused=False)
    np.testing.assert_allclose(after, ref.predict(obs), atol=1e-6)
    assert not np.allclose(before, after)
