"""Train as you act: fixed, multi-scale recency decays (BackboneConfig.recency_fixed,
recency_multiscale). The slopes are the ones training used, so the recurrent step must equal
the parallel forward on the same tokens: checked in float64 against both recurrent paths."""

from __future__ import annotations

import pytest
import torch

from aaren_rl.aaren_policy import BackboneConfig, DecisionModel, DecisionModelConfig

OBS, ACT, HEADS = 5, 2, 4


def _model(fixed: bool, multiscale: bool, dtype=torch.float64) -> DecisionModel:
    torch.manual_seed(0)
    net = BackboneConfig(dim=16, num_layers=2, num_heads=HEADS, dropout=0.0, recency_init=0.2,
                         recency_fixed=fixed, recency_multiscale=multiscale)  # fmt: skip
    model = DecisionModel(DecisionModelConfig(OBS, ACT, "aaren", net)).to(dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "recency" not in name:
                p.add_(torch.randn_like(p) * 0.3)
    return model


def _slopes(model: DecisionModel) -> list[torch.Tensor]:
    return [blk.mixer.recency_slope().detach().clone() for blk in model.backbone.blocks]


def test_multiscale_slopes_halve_from_head_to_head() -> None:
    for layer in _slopes(_model(fixed=True, multiscale=True)):
        want = 0.2 * 0.5 ** torch.arange(HEADS, dtype=torch.float64)
        torch.testing.assert_close(layer, want, rtol=1e-6, atol=0)
    for layer in _slopes(_model(fixed=False, multiscale=False)):
        torch.testing.assert_close(layer, torch.full((HEADS,), 0.2, dtype=torch.float64),
                                   rtol=1e-6, atol=0)  # fmt: skip


@pytest.mark.parametrize("fixed", [True, False])
def test_fixed_slopes_do_not_move_in_training(fixed: bool) -> None:
    model = _model(fixed, multiscale=True, dtype=torch.float32).train()
    before = _slopes(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        rtg, obs = torch.randn(2, 6, 1, generator=gen), torch.randn(2, 6, OBS, generator=gen)
        act, ts = torch.rand(2, 6, ACT, generator=gen), torch.arange(6).expand(2, 6)
        pred, _ = model(rtg, obs, act, ts)
        opt.zero_grad()
        ((pred - act) ** 2).mean().backward()
        opt.step()
    moved = [not torch.equal(a, b) for a, b in zip(before, _slopes(model))]
    assert moved == [not fixed] * len(moved)


def test_the_recurrent_step_equals_the_parallel_forward(recurrent_paths_match) -> None:
    model = _model(fixed=True, multiscale=True).eval()
    gen = torch.Generator().manual_seed(2)
    b, k = 3, 9
    rtg = torch.randn(b, k, 1, generator=gen, dtype=torch.float64)
    obs = torch.randn(b, k, OBS, generator=gen, dtype=torch.float64)
    act = torch.rand(b, k, ACT, generator=gen, dtype=torch.float64) * 2 - 1
    ts = torch.arange(k).expand(b, k).clone()
    with torch.no_grad():
        parallel, _ = model(rtg, obs, act, ts)
    recurrent_paths_match(model, parallel, rtg, obs, act, ts)
