"""The categorical action head: loss, acting (argmax / sampling), parallel == recurrent."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aaren_rl.aaren_policy import BackboneConfig, DecisionModel, DecisionModelConfig
from aaren_rl.aaren_policy.fused import FusedAarenPolicy


def _model(backbone: str = "aaren", discrete: bool = True, seed: int = 0) -> DecisionModel:
    torch.manual_seed(seed)
    net = BackboneConfig(dim=16, num_layers=2, num_heads=2, dropout=0.0)
    cfg = DecisionModelConfig(obs_dim=3, act_dim=4, backbone=backbone, net=net, discrete=discrete)
    return DecisionModel(cfg).eval()


def _batch(b: int = 2, k: int = 7):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 4, (b, k), generator=g)
    return (
        torch.randn(b, k, 1, generator=g),
        torch.randn(b, k, 3, generator=g),
        F.one_hot(ids, 4).float(),
        torch.arange(k).expand(b, k),
        ids,
    )


def test_loss_is_masked_cross_entropy_and_continuous_is_mse() -> None:
    m = _model()
    rtg, obs, act, ts, ids = _batch()
    logits, _ = m(rtg, obs, act, ts)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 4:] = False
    want = F.cross_entropy(logits[mask], ids[mask])
    assert torch.allclose(m.action_loss(logits, act, mask), want, atol=1e-6)
    w = torch.ones(2, 7)
    w[0, 2] = 5.0  # a weighted step counts five times
    per = F.cross_entropy(logits.reshape(-1, 4), ids.reshape(-1), reduction="none").view(2, 7)
    weighted = (per * w * mask).sum() / (w * mask).sum()
    assert torch.allclose(m.action_loss(logits, act, mask, w), weighted, atol=1e-6)
    c = _model(discrete=False)
    preds, _ = c(rtg, obs, act, ts)
    assert preds.abs().max() <= 1.0  # tanh head unchanged
    mse = ((preds - act) ** 2).mean(-1)[mask].mean()
    assert torch.allclose(c.action_loss(preds, act, mask), mse, atol=1e-6)


@pytest.mark.parametrize("backbone", ["aaren", "transformer"])
def test_act_is_the_argmax_of_the_parallel_logits(backbone: str) -> None:
    m = _model(backbone)
    rtg, obs, act, ts, _ = _batch(b=2, k=6)
    with torch.no_grad():
        logits, _ = m(rtg, obs, act, ts)
        state = m.init_state(2)
        for t in range(6):
            a, state = m.act(obs[:, t], rtg[:, t], ts[:, t], state)
            assert torch.equal(a, F.one_hot(logits[:, t].argmax(-1), 4).float())
            state = m.observe_action(act[:, t], ts[:, t], state)


def test_fused_step_gives_the_same_one_hot_actions() -> None:
    m = _model()
    fused = FusedAarenPolicy(m)
    rtg, obs, _, ts, _ = _batch(b=3, k=5)
    with torch.no_grad():
        state, fstate = m.init_state(3), fused.init_state(3)
        for t in range(5):
            a, state = m.act(obs[:, t], rtg[:, t], ts[:, t], state)
            state = m.observe_action(a, ts[:, t], state)
            fa, fstate = fused(obs[:, t], rtg[:, t], ts[:, t], fstate)
            assert torch.equal(a, fa)


def test_sampling_gives_one_hot_actions_from_the_policy() -> None:
    m = _model()
    m.sample_actions = True
    logits = torch.tensor([[0.0, 0.0, 50.0, 0.0], [0.0, 0.0, 0.0, 0.0]]).repeat(200, 1)
    torch.manual_seed(0)
    a = m.to_action(logits)
    assert torch.equal(a.sum(-1), torch.ones(400))
    assert (a[0::2].argmax(-1) == 2).all()  # a near-certain choice is always taken
    spread = a[1::2].mean(0)  # uniform logits: every action drawn
    assert (spread > 0.15).all()
