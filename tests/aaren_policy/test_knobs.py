"""Ablation knobs of the model: activation, state encoder, left padding with a mask.

Each knob must give finite outputs and gradients, keep the fused step equal to the
unfused one, and (padding) never let a padded position change a real one.
"""

from __future__ import annotations

import pytest
import torch

from aaren_rl.aaren_policy import (
    BackboneConfig,
    DecisionModel,
    DecisionModelConfig,
    to_left_padding,
)
from aaren_rl.aaren_policy.backbone import ACTIVATIONS, activation_fn
from aaren_rl.aaren_policy.fused import FusedAarenPolicy

OBS, ACT = 5, 2
F64 = torch.float64
KINDS = ("aaren", "transformer")


def _model(
    backbone: str = "aaren", dtype=F64, activation: str = "gelu", recency: float = 0.0, **kw
) -> DecisionModel:
    torch.manual_seed(0)
    net = BackboneConfig(
        dim=16, num_layers=2, num_heads=2, dropout=0.0, activation=activation, recency_init=recency
    )
    model = DecisionModel(DecisionModelConfig(OBS, ACT, backbone, net, **kw)).eval().to(dtype)
    with torch.no_grad():  # away from the init, so every weight matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def _batch(b: int = 3, k: int = 7, dtype=F64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    rtg = torch.randn(b, k, 1, generator=gen, dtype=dtype)
    obs = torch.randn(b, k, OBS, generator=gen, dtype=dtype)
    act = torch.rand(b, k, ACT, generator=gen, dtype=dtype) * 2 - 1
    ts = torch.arange(k).expand(b, k).clone()
    return rtg, obs, act, ts


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("encoder", ["linear", "mlp"])
def test_knobs_give_finite_outputs_and_gradients(kind: str, activation: str, encoder: str) -> None:
    model = _model(kind, torch.float32, activation, state_encoder=encoder).train()
    rtg, obs, act, ts = _batch(dtype=torch.float32)
    pred, _ = model(rtg, obs, act, ts)
    ((pred - act) ** 2).mean().backward()
    assert pred.shape == act.shape and torch.isfinite(pred).all()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(float(p.grad.abs().sum()) > 0 for p in model.embed_state.parameters())


def test_activation_changes_the_function() -> None:
    x = torch.linspace(-3, 3, 61, dtype=F64)
    gelu, tanh, relu = (activation_fn(a)(x) for a in ("gelu", "gelu_tanh", "relu"))
    assert 0 < float((gelu - tanh).abs().max()) < 1e-3  # the approximation, not the same op
    torch.testing.assert_close(relu, x.clamp_min(0))
    outs = [_model(activation=a)(*_batch())[0] for a in ACTIVATIONS]
    assert not torch.allclose(outs[0], outs[2])
    with pytest.raises(ValueError, match="activation"):
        BackboneConfig(activation="swish")  # type: ignore[arg-type]


def test_mlp_state_encoder_shape_and_config() -> None:
    lin, mlp = _model(), _model(state_encoder="mlp", state_encoder_hidden=24)
    extra = (OBS * 24 + 24 + 24 * 16 + 16) - (OBS * 16 + 16)
    assert mlp.num_parameters() - lin.num_parameters() == extra
    assert isinstance(mlp.embed_state[1], torch.nn.ReLU)
    cfg = DecisionModelConfig.from_dict(mlp.config.to_dict())
    assert cfg.state_encoder == "mlp" and cfg.state_encoder_hidden == 24
    with pytest.raises(ValueError, match="state_encoder"):
        DecisionModelConfig(OBS, ACT, state_encoder="cnn")  # type: ignore[arg-type]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("encoder", ["linear", "mlp"])
@pytest.mark.parametrize("return_in_state, recency", [(False, 0.0), (True, 0.0), (False, 0.2)])
def test_fused_step_follows_the_knobs(
    activation: str, encoder: str, return_in_state: bool, recency: float
) -> None:
    model = _model(
        activation=activation,
        state_encoder=encoder,
        return_in_state_token=return_in_state,
        recency=recency,
    )
    policy = FusedAarenPolicy(model)
    b = 2
    ref, st = model.init_state(b), policy.init_state(b)
    ref = tuple(type(s)(*(t.to(F64) for t in s)) for s in ref)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in range(6):
            obs = torch.randn(b, OBS, generator=gen, dtype=F64)
            rtg = torch.randn(b, 1, generator=gen, dtype=F64)
            time = torch.full((b,), t)
            a_ref, after = model.act(obs, rtg, time, ref)
            ref = model.observe_action(a_ref, time, after)
            a, st = policy(obs, rtg, time, st)
            torch.testing.assert_close(a, a_ref, atol=1e-10, rtol=0)


def test_to_left_padding() -> None:
    mask = torch.tensor(
        [[True, True, False, False], [True, True, True, True], [True, False, False, False]]
    )
    x = torch.arange(12).view(3, 4)
    y = torch.arange(24).view(3, 4, 2)
    new_mask, (x2, y2) = to_left_padding(mask, x, y)
    assert new_mask.tolist() == [
        [False, False, True, True],
        [True, True, True, True],
        [False, False, False, True],
    ]
    assert x2[new_mask].tolist() == x[mask].tolist()  # real values kept, in order
    assert y2[new_mask].tolist() == y[mask].tolist()


@pytest.mark.parametrize("kind", KINDS)
def test_left_padding_never_changes_real_positions(kind: str) -> None:
    """A row left-padded with garbage gives, at its real positions, exactly what the real
    tokens alone give; and no gradient flows into the padded inputs."""
    model = _model(kind)
    k, pad = 7, 3
    rtg, obs, act, ts = _batch(b=1, k=k)
    alone, _ = model(rtg[:, pad:], obs[:, pad:], act[:, pad:], ts[:, pad:])
    mask = torch.arange(k).unsqueeze(0) >= pad
    for seed in (1, 2):  # two different paddings, both ignored
        g_rtg, g_obs, g_act, _ = _batch(b=1, k=k, seed=seed)
        p_obs = torch.where(mask.unsqueeze(-1), obs, g_obs * 50).requires_grad_()
        p_rtg = torch.where(mask.unsqueeze(-1), rtg, g_rtg * 50)
        p_act = torch.where(mask.unsqueeze(-1), act, g_act)
        out, _ = model(p_rtg, p_obs, p_act, ts, mask=mask)
        torch.testing.assert_close(out[:, pad:], alone, atol=1e-10, rtol=1e-10)
        out[:, pad:].sum().backward()
        assert float(p_obs.grad[:, :pad].abs().max()) == 0.0
        assert float(p_obs.grad[:, pad:].abs().max()) > 0.0
    # Without the mask the padding does leak in (the test can fail).
    leaked, _ = model(p_rtg, p_obs.detach(), p_act, ts)
    assert not torch.allclose(leaked[:, pad:], alone)


@pytest.mark.parametrize("kind, recency", [("aaren", 0.0), ("transformer", 0.0), ("aaren", 0.2)])
def test_left_padded_batch_equals_right_padded(kind: str, recency: float) -> None:
    """A right-padded batch and its left-padded rotation give the same real predictions
    (with a recency slope too: left padding shifts every real token by the same number of
    positions, so the bias lambda * i moves by a constant, which the softmax cancels)."""
    model = _model(kind, recency=recency)
    rtg, obs, act, ts = _batch(b=3, k=6)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 1 + [0] * 5], dtype=torch.bool)
    right, _ = model(rtg, obs, act, ts)
    lmask, (l_rtg, l_obs, l_act, l_ts) = to_left_padding(mask, rtg, obs, act, ts)
    left, _ = model(l_rtg, l_obs, l_act, l_ts, mask=lmask)
    torch.testing.assert_close(left[lmask], right[mask], atol=1e-10, rtol=1e-10)


def test_transformer_mask_with_a_cache() -> None:
    """The mask also applies after a cached prefix (continuation)."""
    model = _model("transformer")
    rtg, obs, act, ts = _batch(b=2, k=6)
    y, _ = model(rtg, obs, act, ts)
    _, state = model(rtg[:, :2], obs[:, :2], act[:, :2], ts[:, :2])
    mask = torch.ones(2, 4, dtype=torch.bool)
    y2, _ = model(rtg[:, 2:], obs[:, 2:], act[:, 2:], ts[:, 2:], state, mask=mask)
    torch.testing.assert_close(y2, y[:, 2:], atol=1e-10, rtol=1e-10)


def test_mask_shape_is_checked() -> None:
    model = _model()
    rtg, obs, act, ts = _batch()
    with pytest.raises(ValueError, match="mask"):
        model(rtg, obs, act, ts, mask=torch.ones(3, 5, dtype=torch.bool))


def test_query_init_std() -> None:
    """The query token starts at the configured scale; larger queries give sharper scores."""
    torch.manual_seed(0)
    small = DecisionModel(DecisionModelConfig(OBS, ACT, net=BackboneConfig(dim=64)))
    torch.manual_seed(0)
    big = DecisionModel(
        DecisionModelConfig(OBS, ACT, net=BackboneConfig(dim=64, query_init_std=1.0))
    )
    q_small = torch.stack([b.mixer.query.detach() for b in small.backbone.blocks])
    q_big = torch.stack([b.mixer.query.detach() for b in big.backbone.blocks])
    assert 0.01 < float(q_small.std()) < 0.03 and 0.7 < float(q_big.std()) < 1.3
    w_small = small.backbone.blocks[0].mixer.score_projection()[0].detach()
    w_big = big.backbone.blocks[0].mixer.score_projection()[0].detach()
    assert float(w_big.norm()) > 20 * float(w_small.norm())
    with pytest.raises(ValueError, match="query_init_std"):
        BackboneConfig(query_init_std=0.0)


@pytest.mark.parametrize("kind", KINDS)
def test_embed_init_torch_leaves_the_input_layers_at_pytorchs_default(kind: str) -> None:
    net = BackboneConfig(dim=16, num_layers=2, num_heads=2)
    torch.manual_seed(0)
    gpt2 = DecisionModel(DecisionModelConfig(OBS, ACT, kind, net, embed_init="gpt2"))
    torch.manual_seed(0)
    tinit = DecisionModel(DecisionModelConfig(OBS, ACT, kind, net, embed_init="torch"))
    inputs = ("embed_return", "embed_state", "embed_action", "action_head")
    for name in inputs:
        for a, b in zip(getattr(gpt2, name).parameters(), getattr(tinit, name).parameters()):
            assert not torch.equal(a, b)
    # gpt2: N(0, 0.02) weights and zero biases; torch: U(+-1/sqrt(fan_in)), biases included
    assert float(gpt2.embed_return.bias.detach().abs().max()) == 0.0
    assert float(tinit.embed_return.bias.detach().abs().max()) > 0.1  # fan_in 1: U(-1, 1)
    bound = 1 / OBS**0.5
    w = tinit.embed_state.weight.detach()
    assert float(w.abs().max()) <= bound and float(w.std()) > 3 * 0.02
    # the backbone and the timestep table are initialised alike in both
    for (na, a), (_, b) in zip(gpt2.named_parameters(), tinit.named_parameters()):
        if not na.startswith(inputs):
            assert torch.equal(a, b), na
    with pytest.raises(ValueError, match="embed_init"):
        DecisionModelConfig(OBS, ACT, embed_init="xavier")  # type: ignore[arg-type]


def test_a_saved_config_without_activation_is_gelu_and_defaults_are_the_recipes() -> None:
    cfg = DecisionModelConfig(OBS, ACT)
    assert cfg.net.activation == "relu" and cfg.embed_init == "torch"  # the 10k-step recipe
    saved = cfg.to_dict()
    del saved["net"]["activation"]  # written before the field existed: every model was GELU
    assert DecisionModelConfig.from_dict(saved).net.activation == "gelu"
    saved["net"]["activation"] = "relu"
    assert DecisionModelConfig.from_dict(saved).net.activation == "relu"


@pytest.mark.parametrize("kind", KINDS)
def test_return_in_state_token(kind: str) -> None:
    """R_t also enters s_t's token: d more weights, the parallel path equals act/observe,
    and the action at s_t then depends on R_t even with attention made blind to it."""
    plain, with_r = _model(kind), _model(kind, return_in_state_token=True)
    assert with_r.num_parameters() - plain.num_parameters() == 16  # Linear(1, d), no bias
    rtg, obs, act, ts = _batch(b=2, k=5)
    pred, _ = with_r(rtg, obs, act, ts)
    state = with_r.init_state(2)
    state = tuple(type(s)(*(t.to(F64) for t in s)) for s in state) if kind == "aaren" else None
    with torch.no_grad():
        for t in range(5):
            a_t, state = with_r.act(obs[:, t], rtg[:, t], ts[:, t], state)
            torch.testing.assert_close(a_t, pred[:, t], atol=1e-10, rtol=1e-10)
            state = with_r.observe_action(act[:, t], ts[:, t], state)
    # One token only (k = 1), the return token's key made irrelevant by zeroing its
    # embedding: the action at s_1 still moves with R_1 through the state token alone.
    for model, moves in ((plain, False), (with_r, True)):
        with torch.no_grad():
            model.embed_return.weight.zero_()
            model.embed_return.bias.zero_()
        a1, _ = model(rtg[:, :1], obs[:, :1], act[:, :1], ts[:, :1])
        a2, _ = model(rtg[:, :1] + 3.0, obs[:, :1], act[:, :1], ts[:, :1])
        assert (not torch.allclose(a1, a2)) == moves


def test_recency_is_an_alibi_penalty_inside_the_scan() -> None:
    """Output t of a recency layer = softmax over i <= t of (s_i - lambda (t - i)); the
    parallel path, the step path and a continuation agree; recency_init 0 adds nothing."""
    from aaren_rl.aaren_policy.aaren import Aaren

    torch.manual_seed(0)
    layer = Aaren(16, 2, recency_init=0.3).double()
    with torch.no_grad():
        layer.recency.copy_(torch.tensor([-1.0, 0.5], dtype=F64))  # two different slopes
    x = torch.randn(2, 9, 16, dtype=F64)
    y, state = layer(x)
    scores, values = layer._scores_values(x)  # (B, T, H), (B, T, H, dh)
    lam = layer.recency_slope()
    t = torch.arange(9, dtype=F64)
    logits = scores.permute(0, 2, 1).unsqueeze(-2) - lam.view(1, 2, 1, 1) * (t.view(-1, 1) - t)
    logits = logits.masked_fill(t.view(1, -1) > t.view(-1, 1), -torch.inf)  # (B, H, t, i)
    ref = torch.softmax(logits, dim=-1) @ values.permute(0, 2, 1, 3)  # (B, H, T, dh)
    ref = layer.out_proj(ref.permute(0, 2, 1, 3).reshape(2, 9, 16))
    torch.testing.assert_close(y, ref, atol=1e-12, rtol=0)
    steps, s = [], None
    for i in range(9):
        o, s = layer.step(x[:, i], s)
        steps.append(o)
    torch.testing.assert_close(torch.stack(steps, 1), y, atol=1e-12, rtol=0)
    y1, s1 = layer(x[:, :4])
    y2, s2 = layer(x[:, 4:], s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, atol=1e-12, rtol=0)
    torch.testing.assert_close(s2.m, state.m, atol=1e-12, rtol=0)
    assert Aaren(16, 2).recency is None and Aaren(16, 2).recency_slope() is None
    with pytest.raises(ValueError, match="recency_init"):
        BackboneConfig(recency_init=-0.1)
