"""Score jitter (BackboneConfig.score_jitter): a training-only random flattening of Aaren's
attention. It must change nothing when acting (eval mode, the O(1) step) and change the
training forward exactly as stated: scores times a factor in [1 - jitter, 1]."""

from __future__ import annotations

import pytest
import torch

from aaren_rl.aaren_policy import BackboneConfig, DecisionModel, DecisionModelConfig
from aaren_rl.aaren_policy.aaren import Aaren

OBS, ACT = 5, 2


def _model(jitter: float) -> DecisionModel:
    torch.manual_seed(0)
    net = BackboneConfig(dim=16, num_layers=2, num_heads=2, dropout=0.0, score_jitter=jitter)
    model = DecisionModel(DecisionModelConfig(OBS, ACT, "aaren", net)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # scores far from 0, so flattening shows
    return model


def _batch(seed: int, t: int = 7):
    gen = torch.Generator().manual_seed(seed)
    rtg = torch.randn(2, t, 1, generator=gen, dtype=torch.float64)
    obs = torch.randn(2, t, OBS, generator=gen, dtype=torch.float64)
    act = torch.rand(2, t, ACT, generator=gen, dtype=torch.float64)
    return rtg, obs, act, torch.arange(t).expand(2, t).clone()


def test_acting_is_unchanged_by_jitter(recurrent_paths_match) -> None:
    plain, jittered = _model(0.0).eval(), _model(0.6).eval()
    rtg, obs, act, ts = _batch(1)
    with torch.no_grad():
        want, _ = plain(rtg, obs, act, ts)
        got, _ = jittered(rtg, obs, act, ts)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # Both recurrent paths (the model's step, the fused O(1) step) act as the plain forward.
    recurrent_paths_match(jittered, want, rtg, obs, act, ts)


def test_training_forward_flattens_the_scores_within_the_stated_range() -> None:
    torch.manual_seed(3)
    layer = Aaren(8, num_heads=2, score_jitter=0.5).double().train()
    with torch.no_grad():
        layer.query.mul_(50.0)  # sharp attention
    x = torch.randn(3, 9, 8, dtype=torch.float64)
    torch.manual_seed(4)
    y, _ = layer(x)
    torch.manual_seed(4)  # the same factors, by hand: c = 1 - 0.5 u
    c = 1.0 - 0.5 * torch.rand(3, 1, 2, dtype=torch.float32)
    assert bool(((c >= 0.5) & (c <= 1.0)).all())
    w, b = layer.score_projection()
    scores = (torch.nn.functional.linear(x, w, b) * c.double()).transpose(1, 2)  # (B, H, T)
    weights = torch.softmax(scores.unsqueeze(-2).expand(3, 2, 9, 9).tril().masked_fill(
        torch.ones(9, 9, dtype=torch.bool).triu(1), float("-inf")), dim=-1)  # fmt: skip
    values = layer.v_proj(x).view(3, 9, 2, 4).transpose(1, 2)  # (B, H, T, dh)
    ref = layer.out_proj((weights @ values).transpose(1, 2).reshape(3, 9, 8))
    torch.testing.assert_close(y, ref, rtol=1e-9, atol=1e-9)
    layer.eval()
    y_eval, _ = layer(x)
    assert not torch.allclose(y_eval, y)  # the jitter moved the training output


@pytest.mark.parametrize("bad", [-0.1, 1.0, float("nan")])
def test_a_jitter_outside_zero_to_one_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="score_jitter"):
        BackboneConfig(score_jitter=bad)
    with pytest.raises(ValueError, match="score_jitter"):
        Aaren(8, score_jitter=bad)


def test_the_setting_travels_with_the_checkpoint_config() -> None:
    cfg = DecisionModelConfig(OBS, ACT, "aaren", BackboneConfig(dim=16, score_jitter=0.4))
    back = DecisionModelConfig.from_dict(cfg.to_dict())
    assert back.net.score_jitter == 0.4
    old = cfg.to_dict()
    del old["net"]["score_jitter"]  # a checkpoint written before the option
    assert DecisionModelConfig.from_dict(old).net.score_jitter == 0.0
