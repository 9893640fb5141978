"""Causal softmax self-attention with a KV cache: the Transformer baseline's mixer.

Same projections as ``Aaren`` (q, k, v, out), so a Transformer stack and an Aaren stack of
the same config differ by one d-vector per layer (Aaren's query token). The query here is
computed from each input token; its recurrent form therefore needs every earlier key and
value: the KV cache grows by one row per token.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CausalSelfAttention", "KVCache"]

# Below this many tokens, bf16/fp16 attention on CPU uses the plain math form (bf16 matmuls,
# float32 softmax) instead of scaled_dot_product_attention: PyTorch's CPU flash kernel is
# slower in bf16 than in float32 at short lengths. Measured forward + backward, one thread,
# dh = 128: 60 tokens x batch 64, kernel 37 ms vs math 13 ms; 300 x 16, 111 vs 62 ms;
# 3000 x 4, 1724 vs 2317 ms (the kernel wins, and the math form's T x T scores grow).
MATH_ATTENTION_MAX_TOKENS = 512


def _math_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(dh) + causal mask) v, the softmax in float32; (B, H, T, dh)."""
    t = q.shape[-2]
    scores = (q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5  # (B, H, T, T)
    causal = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    scores = scores.masked_fill(~causal, -math.inf)
    return torch.softmax(scores, dim=-1).to(v.dtype) @ v


class KVCache(NamedTuple):
    """Keys and values of every token seen, per layer.

    Attributes:
        k: (B, H, L, dh) keys.
        v: (B, H, L, dh) values.
        valid: (B, L) bool; False for slots of an episode that was reset (rows in a batch
            restart independently, so a reset masks a row's old slots instead of cutting
            the shared tensor).
    """

    k: torch.Tensor
    v: torch.Tensor
    valid: torch.Tensor

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self)


def _prefer_math(q: torch.Tensor) -> bool:
    half = q.dtype in (torch.bfloat16, torch.float16)
    return half and q.device.type == "cpu" and q.shape[-2] <= MATH_ATTENTION_MAX_TOKENS


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention.

    Args:
        dim: model width.
        num_heads: heads; ``dim`` must be divisible by it.
        bias: biases on the projections.
    """

    def __init__(self, dim: int, num_heads: int = 1, bias: bool = True) -> None:
        super().__init__()
        if dim <= 0 or num_heads <= 0 or dim % num_heads:
            raise ValueError(f"dim ({dim}) must be a positive multiple of num_heads ({num_heads})")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(dim, dim, bias=bias)
        self.v_proj = nn.Linear(dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def _check_cache(self, cache: KVCache, batch: int, dtype: torch.dtype) -> None:
        """The cache must belong to this layer and batch (no silent broadcasting)."""
        if not (
            isinstance(cache, tuple)
            and len(cache) == 3
            and all(isinstance(t, torch.Tensor) for t in cache)
        ):
            raise ValueError(f"state must be a KVCache (or None), got {type(cache).__name__}")
        h, dh = self.num_heads, self.head_dim
        k, v, valid = cache
        if (
            k.dim() != 4
            or k.shape[0] != batch
            or k.shape[1] != h
            or k.shape[3] != dh
            or v.shape != k.shape
            or valid.shape != (batch, k.shape[2])
        ):
            raise ValueError(
                f"KVCache shapes k {tuple(k.shape)}, v {tuple(v.shape)}, valid "
                f"{tuple(valid.shape)} do not match batch {batch}, {h} heads of size {dh}: "
                f"expected k, v (B={batch}, {h}, L, {dh}) and valid (B={batch}, L) "
                "(use init_state(batch_size) for a fresh one)"
            )
        if k.dtype != dtype or v.dtype != dtype or valid.dtype != torch.bool:
            raise ValueError(
                f"KVCache dtypes k {k.dtype}, v {v.dtype}, valid {valid.dtype}: expected {dtype} "
                "and torch.bool"
            )

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, dh)

    def forward(
        self, x: torch.Tensor, state: KVCache | None = None, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        """Attention over ``x`` (B, T, dim) after the cached tokens; returns (y, cache).

        ``mask`` (B, T) bool, True at real tokens: the others (left padding) are excluded as
        keys of every other position and marked invalid in the cache. A padded query still
        attends to itself (a row with no key at all would be NaN); its output is unused.
        """
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected x of shape (B, T, {self.dim}), got {tuple(x.shape)}")
        if x.dtype != self.q_proj.weight.dtype:
            raise ValueError(
                f"input dtype {x.dtype} differs from the layer's {self.q_proj.weight.dtype}: "
                "cast the input (or the layer, e.g. layer.double())"
            )
        b, t, _ = x.shape
        if t == 0:
            raise ValueError("the sequence is empty (T = 0): pass at least one token")
        if state is not None:
            self._check_cache(state, b, x.dtype)
        q, k, v = (
            self._heads(self.q_proj(x)),
            self._heads(self.k_proj(x)),
            self._heads(self.v_proj(x)),
        )
        new_valid = torch.ones(b, t, dtype=torch.bool, device=x.device) if mask is None else mask
        if (state is None or state.k.shape[2] == 0) and mask is None:
            if _prefer_math(q):
                out = _math_causal_attention(q, k, v)
            else:
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            cache = KVCache(k, v, new_valid)
        else:
            past = 0 if state is None else state.k.shape[2]
            if past:
                k = torch.cat([state.k, k], dim=2)
                v = torch.cat([state.v, v], dim=2)
                valid = torch.cat([state.valid, new_valid], dim=1)  # (B, L + T)
            else:
                valid = new_valid
            causal = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(past)
            allowed = causal.unsqueeze(0) & valid.unsqueeze(1)  # (B, T, L + T)
            if mask is not None:  # every query keeps its own key (see the docstring)
                keys = torch.arange(past + t, device=x.device)
                own = keys.unsqueeze(0) == keys[past:].unsqueeze(1)  # (T, L + T) diagonal
                allowed = allowed | own
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed.unsqueeze(1))
            cache = KVCache(k, v, valid)
        y = self.out_proj(out.transpose(1, 2).reshape(b, t, self.dim))
        return y, cache

    def step(self, x_t: torch.Tensor, state: KVCache | None = None) -> tuple[torch.Tensor, KVCache]:
        """One token (B, dim): appends its key and value to the cache (O(t) time and memory)."""
        if x_t.dim() != 2:
            raise ValueError(f"expected x_t of shape (B, {self.dim}), got {tuple(x_t.shape)}")
        y, cache = self.forward(x_t.unsqueeze(1), state)
        return y.squeeze(1), cache

    def init_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> KVCache:
        """An empty cache (no tokens yet)."""
        shape = (batch_size, self.num_heads, 0, self.head_dim)
        return KVCache(
            torch.zeros(shape, dtype=dtype, device=device),
            torch.zeros(shape, dtype=dtype, device=device),
            torch.zeros(batch_size, 0, dtype=torch.bool, device=device),
        )
