"""Mixed precision: the scan stays exact float32 under bf16 autocast, LayerNorm statistics
and parameters stay float32, and a bf16 training run's loss tracks a float32 run's."""

from __future__ import annotations

import math

import pytest
import torch

from aaren_rl.aaren_policy import (
    BackboneConfig,
    DecisionModel,
    DecisionModelConfig,
    attention_step,
    naive_prefix_attention,
    prefix_attention,
)
from aaren_rl.aaren_policy.precision import autocast, cpu_supports_bf16, resolve_precision
from aaren_rl.aaren_policy.scan import METHODS

BF16 = torch.autocast("cpu", dtype=torch.bfloat16)


def _scores_values(t: int, dtype=torch.float32, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(2, 3, t, generator=gen, dtype=dtype) * 6.0  # sharp, wide-range scores
    v = torch.randn(2, 3, t, 8, generator=gen, dtype=dtype)
    return s, v


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("t", [1, 63, 200])
def test_scan_is_float32_exact_under_autocast(method: str, t: int) -> None:
    """Under bf16 autocast the scan's output equals the float64 reference to float32
    rounding; a bf16 ``p @ v`` (what autocast would do unguarded) is off by ~1e-2."""
    s, v = _scores_values(t)
    ref, ref_state = naive_prefix_attention(s.double(), v.double())
    with BF16:
        out, state = prefix_attention(s, v, method=method, chunk_size=16)
    assert out.dtype == torch.float32 and state.w.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(state.u.double(), ref_state.u, atol=0, rtol=1e-5)
    torch.testing.assert_close(state.m.double(), ref_state.m, atol=0, rtol=0)


def test_scan_upcasts_bf16_inputs_and_state_continues() -> None:
    s, v = _scores_values(50)
    sb, vb = s.bfloat16(), v.bfloat16()
    ref, _ = naive_prefix_attention(sb.double(), vb.double())  # exact in the rounded inputs
    with BF16:
        head, state = prefix_attention(sb[..., :20], vb[..., :20, :])
        tail, _ = prefix_attention(sb[..., 20:], vb[..., 20:, :], state)
        out_step, st = attention_step(sb[..., 0], vb[..., 0, :])
        out_step2, _ = attention_step(sb[..., 1], vb[..., 1, :], st)
    out = torch.cat([head, tail], dim=-2)
    assert out.dtype == torch.float32 and out_step2.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(out_step2.double(), ref[..., 1, :], atol=2e-6, rtol=1e-6)


def test_scan_gradients_exact_under_autocast() -> None:
    s, v = _scores_values(40)
    s64, v64 = s.double().requires_grad_(), v.double().requires_grad_()
    naive_prefix_attention(s64, v64)[0].pow(2).sum().backward()
    s32, v32 = s.clone().requires_grad_(), v.clone().requires_grad_()
    with BF16:
        out, _ = prefix_attention(s32, v32, chunk_size=16)
    out.pow(2).sum().backward()
    torch.testing.assert_close(s32.grad.double(), s64.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(v32.grad.double(), v64.grad, atol=1e-4, rtol=1e-4)


def _model(backbone: str = "aaren", seed: int = 0, dropout: float = 0.0) -> DecisionModel:
    torch.manual_seed(seed)
    net = BackboneConfig(dim=32, num_layers=2, num_heads=2, dropout=dropout)
    return DecisionModel(DecisionModelConfig(5, 2, backbone, net))


def _data(n: int = 8, k: int = 10, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    """A fixed learnable task: the action is a smooth function of the observation."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        obs = torch.randn(16, k, 5, generator=gen)
        act = torch.tanh(obs[..., :2] * 1.5 + obs[..., 2:4].roll(1, dims=1))
        rtg = torch.rand(16, k, 1, generator=gen)
        batches.append((rtg, obs, act, torch.arange(k).expand(16, k)))
    return batches


@pytest.mark.parametrize("backbone", ["aaren", "transformer"])
def test_layernorm_statistics_and_parameters_stay_float32(backbone: str) -> None:
    model = _model(backbone).train()
    seen: list[torch.dtype] = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: seen.extend([inp[0].dtype, out.dtype]))
        for m in model.modules()
        if isinstance(m, torch.nn.LayerNorm)
    ]
    rtg, obs, act, ts = _data(1)[0]
    with autocast("bf16", "cpu"):
        pred, state = model(rtg, obs, act, ts)
    for h in hooks:
        h.remove()
    assert seen and set(seen) == {torch.float32}  # LayerNorm runs on the float32 residual
    assert pred.dtype == torch.bfloat16
    if backbone == "aaren":
        assert all(s.w.dtype == torch.float32 for s in state)
    ((pred.float() - act) ** 2).mean().backward()
    assert all(
        p.dtype == torch.float32 and p.grad.dtype == torch.float32
        for p in model.parameters()
        if p.grad is not None
    )


def _losses(precision: str, backbone: str, seed: int, steps: int = 30) -> list[float]:
    model = _model(backbone, seed, dropout=0.1).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    data = _data()
    torch.manual_seed(100 + seed)  # dropout masks: the same in both precisions
    losses = []
    for i in range(steps):
        rtg, obs, act, ts = data[i % len(data)]
        with autocast(precision, "cpu"):
            pred, _ = model(rtg, obs, act, ts)
        loss = ((pred.float() - act) ** 2).mean()  # the loss in float32
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("backbone", ["aaren", "transformer"])
def test_bf16_loss_tracks_fp32(backbone: str) -> None:
    """Same seed, 30 steps: the bf16 curve stays within 1% of the float32 one at every step.

    Why 1%: bf16 keeps 8 significant bits (relative rounding 2^-9 ~ 0.2% per product), but
    the loss, the scan, LayerNorm and the residual stream stay float32, so the curves differ
    by ~0.1% here (measured, both backbones); 1% leaves room for other CPUs' kernels. A
    different seed (the scale of seed noise) moves the curve by ~9%, and the task is learnt
    (the loss falls by over a third), so the bound is neither loose nor trivial.
    """
    fp32 = _losses("fp32", backbone, seed=0)
    bf16 = _losses("bf16", backbone, seed=0)
    other_seed = _losses("fp32", backbone, seed=1)
    rel = [abs(a - b) / a for a, b in zip(fp32, bf16)]
    seed_rel = [abs(a - b) / a for a, b in zip(fp32, other_seed)]
    assert max(rel) < 0.01, rel
    assert max(rel) < max(seed_rel) / 5
    assert fp32[-1] < 0.65 * fp32[0] and bf16[-1] < 0.65 * bf16[0]
    assert all(math.isfinite(x) for x in bf16)


def test_resolve_precision(tmp_path) -> None:
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_supports_bf16() else "fp32")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", "cpu")
    flags = tmp_path / "cpuinfo"
    flags.write_text("processor : 0\nflags : fpu avx512f avx512_bf16\n")
    assert cpu_supports_bf16(flags)
    flags.write_text("processor : 0\nflags : fpu avx2\n")
    assert not cpu_supports_bf16(flags)
    assert not cpu_supports_bf16(tmp_path / "missing")


def test_autocast_context() -> None:
    lin = torch.nn.Linear(4, 4)
    with autocast("fp32", "cpu"):
        assert lin(torch.randn(2, 4)).dtype == torch.float32
    with autocast("bf16", "cpu"):
        assert lin(torch.randn(2, 4)).dtype == torch.bfloat16


def test_transformer_math_attention_under_bf16_matches_reference(monkeypatch) -> None:
    """Short bf16 sequences on CPU take the math form (faster than the CPU flash kernel in
    bf16); it matches the float64 attention to bf16 rounding, as the kernel does."""
    import aaren_rl.aaren_policy.transformer as tr

    torch.manual_seed(0)
    layer = tr.CausalSelfAttention(32, 2)
    x = torch.randn(3, 40, 32)
    ref, _ = layer.double()(x.double())
    layer.float()
    outs = {}
    for limit in (0, tr.MATH_ATTENTION_MAX_TOKENS):  # 0: always the kernel
        monkeypatch.setattr(tr, "MATH_ATTENTION_MAX_TOKENS", limit)
        xx = x.clone().requires_grad_()
        with BF16:
            y, _ = layer(xx)
        y.float().pow(2).sum().backward()
        outs[limit] = (y.float(), xx.grad)
    (y_k, g_k), (y_m, g_m) = outs.values()
    torch.testing.assert_close(y_m.double(), ref, atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(y_m, y_k, atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(g_m, g_k, atol=5e-2, rtol=5e-2)
    assert tr._prefer_math(torch.zeros(1, 1, 60, 8, dtype=torch.bfloat16))
    assert not tr._prefer_math(torch.zeros(1, 1, 60, 8))  # float32 keeps the kernel
    assert not tr._prefer_math(torch.zeros(1, 1, 3000, 8, dtype=torch.bfloat16))
