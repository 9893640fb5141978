"""Train as you act: ``DecisionModel.forward(memory_horizon=H)`` is the parallel path of an
agent acting recurrently with that memory horizon (each token's score + clock / H, where
acting ages the state by 1/H per timestep). Checked against both recurrent paths in float64,
for windows that start mid-episode too; H = 0 is the plain forward; Transformers refuse it."""

from __future__ import annotations

import pytest
import torch

from aaren_rl.aaren_policy import BackboneConfig, DecisionModel, DecisionModelConfig
from aaren_rl.aaren_policy.aaren import Aaren

OBS, ACT = 5, 2


def _model(backbone: str = "aaren") -> DecisionModel:
    torch.manual_seed(0)
    net = BackboneConfig(dim=16, num_layers=2, num_heads=2, dropout=0.0)
    model = DecisionModel(DecisionModelConfig(OBS, ACT, backbone, net)).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # scores far from 0, so forgetting shows
    return model


def _batch(t: int, start: int):
    gen = torch.Generator().manual_seed(start)
    rtg = torch.randn(2, t, 1, generator=gen, dtype=torch.float64)
    obs = torch.randn(2, t, OBS, generator=gen, dtype=torch.float64)
    act = torch.rand(2, t, ACT, generator=gen, dtype=torch.float64)
    return rtg, obs, act, (start + torch.arange(t)).expand(2, t).clone()


@pytest.mark.parametrize(("horizon", "start"), [(1, 0), (3, 0), (4, 37)])
def test_parallel_forward_with_a_horizon_acts_as_the_recurrent_paths(
    recurrent_paths_match, horizon: int, start: int
) -> None:
    model = _model()
    rtg, obs, act, ts = _batch(9, start)
    with torch.no_grad():
        got, _ = model(rtg, obs, act, ts, memory_horizon=horizon)
        plain, _ = model(rtg, obs, act, ts)
    assert (got - plain).abs().max() > 1e-3  # the horizon changes the outputs
    recurrent_paths_match(model, got, rtg, obs, act, ts, memory_horizon=horizon)


def test_the_state_it_returns_is_the_recurrent_one() -> None:
    model = _model()
    rtg, obs, act, ts = _batch(6, 0)
    decay = 1.0 / 3
    with torch.no_grad():
        _, got = model(rtg, obs, act, ts, memory_horizon=3)
        state = None
        for t in range(6):
            _, state = model.act(obs[:, t], rtg[:, t], ts[:, t], state)
            state = model.backbone.age_state(state, decay)
            state = model.observe_action(act[:, t], ts[:, t], state)
    for g, w in zip(got, state):
        # m is only defined up to the softmax's shift: compare what the state reads out
        torch.testing.assert_close(
            g.w / g.u.unsqueeze(-1), w.w / w.u.unsqueeze(-1), rtol=0, atol=1e-10
        )
        torch.testing.assert_close(g.m, w.m, rtol=0, atol=1e-10)


def test_horizon_zero_is_the_plain_forward_and_gradients_flow() -> None:
    model = _model().train()
    rtg, obs, act, ts = _batch(5, 2)
    plain, _ = model(rtg, obs, act, ts)
    zero, _ = model(rtg, obs, act, ts, memory_horizon=0)
    torch.testing.assert_close(zero, plain, rtol=0, atol=0)
    out, _ = model(rtg, obs, act, ts, memory_horizon=2)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_transformer_and_bad_horizons_are_refused() -> None:
    rtg, obs, act, ts = _batch(4, 0)
    with pytest.raises(ValueError, match="for Aaren"):
        _model("transformer")(rtg, obs, act, ts, memory_horizon=5)
    with pytest.raises(ValueError, match="memory horizon"):
        _model()(rtg, obs, act, ts, memory_horizon=-1)
    layer = Aaren(8, num_heads=2).double()
    x = torch.randn(1, 3, 8, dtype=torch.float64)
    _, state = layer(x)
    with pytest.raises(ValueError, match="empty state"):
        layer(x, state, score_bias=torch.zeros(1, 3, dtype=torch.float64))
