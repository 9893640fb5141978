"""The sequence mixers: the Aaren layer and causal self-attention with its KV cache.

Equivalence of the parallel and one-token paths, continuation, exact causality, state size
(constant for Aaren, growing for the KV cache) and argument validation. float64 wherever a
path is compared with another; float32 where the exact (bitwise) causality is checked.
"""

from __future__ import annotations

import math

import pytest
import torch

from aaren_rl.aaren_policy.aaren import Aaren
from aaren_rl.aaren_policy.scan import METHODS, AttentionState, empty_state
from aaren_rl.aaren_policy.transformer import CausalSelfAttention, KVCache

F64 = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-12}


def aaren(dim: int = 16, heads: int = 2, method: str = "chunked", chunk: int = 4) -> Aaren:
    torch.manual_seed(0)
    layer = Aaren(dim, heads, scan_method=method, chunk_size=chunk)
    with torch.no_grad():  # the default 0.02-scale query gives near-uniform attention
        layer.query.normal_(0.0, 3.0)
    return layer


def attention(dim: int = 16, heads: int = 2) -> CausalSelfAttention:
    torch.manual_seed(0)
    return CausalSelfAttention(dim, heads)


def tokens(b: int, t: int, dim: int = 16, dtype=F64, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, t, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)


LAYERS = {"aaren": aaren, "attention": attention}


# ---------------------------------------------------------------------------------------------
# Aaren specifics
# ---------------------------------------------------------------------------------------------


def test_folded_scores_equal_query_key_products() -> None:
    """score_projection is the same function as q_h . k_h(x) / sqrt(dh) with q = W_q q0 + b_q."""
    layer = aaren().double()
    x = tokens(2, 7)
    w, b = layer.score_projection()
    folded = x @ w.T + b  # (B, T, H)
    q = layer.q_proj(layer.query).view(2, 8)  # (H, dh)
    k = layer.k_proj(x).view(2, 7, 2, 8)  # (B, T, H, dh)
    explicit = torch.einsum("hd,bthd->bth", q, k) / math.sqrt(8)
    torch.testing.assert_close(folded, explicit, **TOL)


def test_aaren_is_softmax_attention_of_the_learned_query() -> None:
    """Output i is softmax attention of the (projected) query token over tokens 1..i."""
    layer = aaren().double()
    x = tokens(2, 9)
    y, _ = layer(x)
    q = layer.q_proj(layer.query).view(2, 8)
    k = layer.k_proj(x).view(2, 9, 2, 8).transpose(1, 2)  # (B, H, T, dh)
    v = layer.v_proj(x).view(2, 9, 2, 8).transpose(1, 2)
    s = torch.einsum("hd,bhtd->bht", q, k) / math.sqrt(8)
    causal = torch.ones(9, 9, dtype=torch.bool).tril()
    p = torch.softmax(s.unsqueeze(-2).masked_fill(~causal, -math.inf), dim=-1)  # (B, H, T, T)
    ref = layer.out_proj((p @ v).transpose(1, 2).reshape(2, 9, 16))
    torch.testing.assert_close(y, ref, **TOL)


@pytest.mark.parametrize("method", METHODS)
def test_aaren_methods_agree_with_gradients(method: str) -> None:
    """Every scan method gives the Aaren layer the same outputs and parameter gradients."""
    grads = {}
    for m in ("naive", method):
        layer = aaren(method=m, chunk=5).double()
        x = tokens(3, 23).requires_grad_()
        y, state = layer(x)
        (y * tokens(3, 23, seed=1)).sum().backward()
        grads[m] = (y, x.grad, *(p.grad for p in layer.parameters()))
    for a, b in zip(grads[method], grads["naive"]):
        torch.testing.assert_close(a, b, **TOL)


# ---------------------------------------------------------------------------------------------
# Parallel == one token at a time, continuation, causality (both mixers)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("start", ("none", "init_state"))
def test_step_equals_forward(kind: str, start: str) -> None:
    layer = LAYERS[kind]().double()
    x = tokens(3, 21)
    y, final = layer(x)
    state = None if start == "none" else layer.init_state(3, dtype=F64)
    ys = []
    for i in range(21):
        y_t, state = layer.step(x[:, i], state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y, **TOL)
    if kind == "aaren":
        torch.testing.assert_close(state.output(), final.output(), **TOL)
    else:
        torch.testing.assert_close(state.k, final.k, **TOL)


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("split", (1, 4, 10, 20))
def test_forward_continuation(kind: str, split: int) -> None:
    layer = LAYERS[kind]().double()
    x = tokens(3, 21)
    y, _ = layer(x)
    y1, state = layer(x[:, :split])
    y2, _ = layer(x[:, split:], state)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, **TOL)


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("t_change", (0, 3, 4, 11, 20))
def test_causality_exact(kind: str, t_change: int) -> None:
    """Changing token t leaves outputs before t bit-for-bit equal (float32)."""
    layer = LAYERS[kind]()
    x = tokens(2, 21, dtype=torch.float32)
    x2 = x.clone()
    x2[:, t_change] = 5 * torch.randn(2, 16)
    y, y2 = layer(x)[0], layer(x2)[0]
    assert torch.equal(y[:, :t_change], y2[:, :t_change])
    assert not torch.equal(y[:, t_change], y2[:, t_change])


# ---------------------------------------------------------------------------------------------
# State size
# ---------------------------------------------------------------------------------------------


def test_aaren_state_size_constant_over_10000_steps() -> None:
    """Aaren's state after 10,000 tokens has the bytes (and shapes) it had after one."""
    layer = Aaren(4, 2)
    x = torch.randn(10_000, 1, 4, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        y, state = layer.step(x[0], layer.init_state(1))
        first = state.nbytes()
        shapes = [t.shape for t in state]
        for i in range(1, 10_000):
            y, state = layer.step(x[i], state)
    assert state.nbytes() == first == (2 + 2 + 2 * 2) * 4  # m, u (1, 2); w (1, 2, 2) float32
    assert [t.shape for t in state] == shapes
    assert torch.isfinite(y).all()


def test_kv_cache_grows_one_slot_per_token() -> None:
    layer = attention()
    state = layer.init_state(2)
    sizes = []
    with torch.inference_mode():
        for _ in range(5):
            _, state = layer.step(torch.randn(2, 16), state)
            sizes.append(state.nbytes())
    per_token = 2 * (2 * 16 * 4) + 2  # k and v rows (B, H*dh) float32, plus (B,) valid flags
    assert sizes == [per_token * (i + 1) for i in range(5)]
    assert state.k.shape == (2, 2, 5, 8)


# ---------------------------------------------------------------------------------------------
# Argument validation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", (Aaren, CausalSelfAttention))
def test_dim_not_divisible_by_heads(cls) -> None:
    with pytest.raises(ValueError, match="multiple of num_heads"):
        cls(10, 3)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        cls(0, 1)


@pytest.mark.parametrize("kind", LAYERS)
def test_bad_inputs(kind: str) -> None:
    layer = LAYERS[kind]()
    x = tokens(2, 5, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"expected x of shape \(B, T, 16\)"):
        layer(x[..., :15])
    with pytest.raises(ValueError, match=r"expected x of shape"):
        layer(x[0])
    with pytest.raises(ValueError, match="input dtype torch.int64"):
        layer(x.long())
    with pytest.raises(ValueError, match="input dtype torch.float64"):
        layer(x.double())
    with pytest.raises(ValueError, match="input dtype torch.float64"):
        layer.step(x[:, 0].double(), layer.init_state(2))
    with pytest.raises(ValueError, match=r"T = 0"):
        layer(x[:, :0])
    with pytest.raises(ValueError, match="expected x_t of shape"):
        layer.step(x, layer.init_state(2))


def test_aaren_bad_state() -> None:
    layer = aaren()
    x = tokens(2, 5, dtype=torch.float32)
    with pytest.raises(ValueError, match="state shapes"):
        layer(x, layer.init_state(3))
    with pytest.raises(ValueError, match="state shapes"):  # would broadcast silently
        layer.step(x[:, 0], layer.init_state(1))
    with pytest.raises(ValueError, match="state shapes"):
        layer(x, empty_state((2, 2), 4))  # head size 8, not 4
    with pytest.raises(ValueError, match="state dtypes"):
        layer(x, layer.init_state(2, dtype=F64))
    with pytest.raises(ValueError, match="AttentionState"):
        layer(x, AttentionState(*layer.init_state(2))[:2])


def test_attention_bad_cache() -> None:
    layer = attention()
    x = tokens(2, 5, dtype=torch.float32)
    _, cache = layer(x)
    with pytest.raises(ValueError, match="KVCache shapes"):
        layer(x[:1], cache)  # batch 1 vs a cache of batch 2
    with pytest.raises(ValueError, match="KVCache shapes"):
        layer(x, layer.init_state(3))  # an empty cache of the wrong batch is caught too
    with pytest.raises(ValueError, match="KVCache shapes"):
        layer(x, KVCache(cache.k[:, :1], cache.v[:, :1], cache.valid))
    with pytest.raises(ValueError, match="KVCache dtypes"):
        layer(x, KVCache(cache.k.double(), cache.v.double(), cache.valid))
    with pytest.raises(ValueError, match="must be a KVCache"):
        layer(x, cache[:2])
