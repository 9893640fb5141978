"""DecisionModel: shapes, padding never leaks into real positions, acting equals the parallel path."""

from __future__ import annotations

import pytest
import torch

from aaren_rl.aaren_policy import BackboneConfig, DecisionModel, DecisionModelConfig

BACKBONES = ["aaren", "transformer"]


def make_model(backbone: str, dtype: torch.dtype = torch.float64) -> DecisionModel:
    torch.manual_seed(0)
    cfg = DecisionModelConfig(
        obs_dim=5,
        act_dim=2,
        backbone=backbone,
        net=BackboneConfig(dim=16, num_layers=2, num_heads=2),
    )
    return DecisionModel(cfg).to(dtype).eval()


def random_batch(b: int, k: int, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(b, k, 1, generator=g, dtype=dtype),
        torch.randn(b, k, 5, generator=g, dtype=dtype),
        torch.rand(b, k, 2, generator=g, dtype=dtype) * 2 - 1,
        torch.arange(k).expand(b, k).clone(),
    )


@pytest.mark.parametrize("backbone", BACKBONES)
def test_padding_never_changes_real_positions(backbone: str) -> None:
    model = make_model(backbone)
    rtg, obs, act, ts = random_batch(3, 12)
    real = 7
    out_a, _ = model(rtg, obs, act, ts)
    # Garbage in the padded (right) part, including huge values and other timesteps.
    rtg2, obs2, act2, ts2 = rtg.clone(), obs.clone(), act.clone(), ts.clone()
    rtg2[:, real:] = 1e4
    obs2[:, real:] = -1e4 * torch.rand_like(obs2[:, real:])
    act2[:, real:] = 0.5
    ts2[:, real:] = 999
    out_b, _ = model(rtg2, obs2, act2, ts2)
    assert torch.equal(out_a[:, :real], out_b[:, :real])


@pytest.mark.parametrize("backbone", BACKBONES)
def test_act_and_observe_equal_the_parallel_forward(backbone: str) -> None:
    model = make_model(backbone)
    rtg, obs, act, ts = random_batch(2, 9)
    parallel, _ = model(rtg, obs, act, ts)
    state = model.init_state(2)
    state = tuple(
        type(s)(*(t.to(torch.float64) if t.is_floating_point() else t for t in s)) for s in state
    )
    for t in range(9):
        a_t, state = model.act(obs[:, t], rtg[:, t], ts[:, t], state)
        torch.testing.assert_close(a_t, parallel[:, t], rtol=0, atol=1e-12)
        state = model.observe_action(act[:, t], ts[:, t], state)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_continuation_of_the_parallel_forward(backbone: str) -> None:
    model = make_model(backbone)
    rtg, obs, act, ts = random_batch(2, 10)
    full, _ = model(rtg, obs, act, ts)
    first, state = model(rtg[:, :4], obs[:, :4], act[:, :4], ts[:, :4])
    second, _ = model(rtg[:, 4:], obs[:, 4:], act[:, 4:], ts[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), full, rtol=0, atol=1e-12)


def test_timesteps_beyond_the_table_reuse_the_last_row() -> None:
    model = make_model("aaren")
    rtg, obs, act, _ = random_batch(1, 3)
    a, _ = model(rtg, obs, act, torch.full((1, 3), 5000))
    b, _ = model(rtg, obs, act, torch.full((1, 3), model.config.max_timestep - 1))
    assert torch.equal(a, b)


def test_parameter_counts_differ_by_the_query_tokens_only() -> None:
    a, t = make_model("aaren"), make_model("transformer")
    assert a.num_parameters() - t.num_parameters() == 2 * 16  # one d-vector per layer


def test_bad_config_and_shapes() -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        DecisionModelConfig(obs_dim=3, act_dim=1, backbone="lstm")
    with pytest.raises(ValueError, match="positive"):
        DecisionModelConfig(obs_dim=0, act_dim=1)
    model = make_model("aaren")
    rtg, obs, act, ts = random_batch(2, 4)
    with pytest.raises(ValueError, match="features"):
        model(rtg, obs[..., :3], act, ts)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        model(rtg[:, :2], obs, act, ts)


def test_config_round_trips_through_a_dict() -> None:
    cfg = make_model("transformer").config
    assert DecisionModelConfig.from_dict(cfg.to_dict()) == cfg
