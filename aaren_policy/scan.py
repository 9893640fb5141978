"""Softmax attention of one query over a growing prefix, computed as a recurrence or a scan.

This is the mathematics of Aaren (Feng et al. 2024, "Attention as an RNN", §3.1-3.2): for
scores ``s_i`` and values ``v_i``, the output after ``k`` tokens is

    o_k = sum_{i<=k} exp(s_i) v_i / sum_{i<=k} exp(s_i)

kept stable with a running maximum. A set of tokens A is summarised by the triple

    m_A = max_i s_i,   u_A = sum_i exp(s_i - m_A),   w_A = sum_i exp(s_i - m_A) v_i

and two adjacent sets combine associatively (``combine`` below). An inclusive scan of the
leaves ``(s_i, 1, v_i)`` gives every prefix at once; ``o_k = w_k / u_k``.

One functional contract for every implementation (as in mamba / flash-linear-attention):

    out, state = prefix_attention(scores, values, state=None)

- ``scores``: (..., T), ``values``: (..., T, D); ``out``: (..., T, D).
- ``state``: an ``AttentionState`` (m (...,), u (...,), w (..., D)) summarising earlier
  tokens; the returned state summarises those and the T new ones.

The empty state is ``m = -inf, u = 0, w = 0`` (not ``m = 0``: with ``m = 0`` a sequence of
very negative scores underflows ``exp(s - 0)`` to 0 and the output becomes 0/0).

Implementations (``method=``):
- ``"chunked"`` (default, chosen by ``aaren-bench scan``, docs/core.md): dense masked softmax inside
  chunks of ``chunk_size`` tokens, the combine operator across chunks. O(T * chunk) memory.
- ``"hillis_steele"``: the textbook log-depth inclusive scan of the combine operator.
  O(T log T) memory for autograd; kept as the plain parallel-scan reference.
- ``"sequential"``: the RNN form, one token at a time (reference; also what ``step`` does).
- ``"naive"``: O(T^2) masked softmax (reference).

Mixed precision: under ``torch.autocast`` (bf16 / fp16) ``prefix_attention`` and
``attention_step`` switch autocast off and upcast lower-precision scores and values to
float32, so the running maximum, the denominators and the accumulations (including the
``p @ v`` products autocast would otherwise run in bf16) are exact float32 whatever the
surrounding precision; the output and the state come back in float32.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = [
    "MASKED",
    "AttentionState",
    "attention_step",
    "combine",
    "empty_state",
    "naive_prefix_attention",
    "prefix_attention",
    "sequential_prefix_attention",
    "METHODS",
]

METHODS = ("chunked", "hillis_steele", "sequential", "naive")
# Score given to a token that must not count (left padding, an absent previous action).
# Finite on purpose: with -inf, a prefix of only such tokens would give exp(-inf - -inf) =
# NaN, and the NaN would reach the real rows' values at the next layer. Once any real token
# (score s) is in the prefix, exp(MASKED - s) is exactly 0 in float32.
MASKED = -1.0e30
DEFAULT_CHUNK = 64  # aaren-bench scan, docs/core.md: 64 ties 32 at T >= 600 and makes the
# DT context (K = 20 timesteps = 60 tokens) one chunk, ~2x faster forward+backward there


class AttentionState(NamedTuple):
    """Summary of the tokens seen so far (per batch element and head).

    Attributes:
        m: (...,) running maximum of the scores (-inf before any token).
        u: (...,) sum of exp(s_i - m) (the softmax denominator).
        w: (..., D) sum of exp(s_i - m) v_i (the numerator).
    """

    m: torch.Tensor
    u: torch.Tensor
    w: torch.Tensor

    def output(self) -> torch.Tensor:
        """The attention output over all tokens summarised, (..., D)."""
        return self.w / self.u.unsqueeze(-1)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self)


def empty_state(
    batch_shape: tuple[int, ...] | torch.Size,
    dim: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> AttentionState:
    """The state of an empty prefix: m = -inf, u = 0, w = 0."""
    m = torch.full(tuple(batch_shape), -math.inf, dtype=dtype, device=device)
    u = torch.zeros(tuple(batch_shape), dtype=dtype, device=device)
    w = torch.zeros((*batch_shape, dim), dtype=dtype, device=device)
    return AttentionState(m, u, w)


def _upcast(t: torch.Tensor) -> torch.Tensor:
    """float32 for half-precision tensors; float32 and float64 pass unchanged."""
    return t.float() if t.is_floating_point() and t.element_size() < 4 else t


def _autocasting(t: torch.Tensor) -> bool:
    return isinstance(t, torch.Tensor) and torch.is_autocast_enabled(t.device.type)


def _rescale(m_from: torch.Tensor, m_to: torch.Tensor) -> torch.Tensor:
    """exp(m_from - m_to), with exp(-inf - -inf) := 0 (an empty set contributes nothing)."""
    diff = m_from - m_to
    # Both -inf only when both sets are empty; their u and w are 0 anyway, so any finite
    # factor is right. nan_to_num keeps gradients finite there.
    return torch.exp(torch.nan_to_num(diff, nan=0.0, neginf=-math.inf))


def combine(a: AttentionState, b: AttentionState) -> AttentionState:
    """The associative operator: the summary of set A followed by set B (docs/design.md §3).

    m = max(m_A, m_B); u = u_A e^{m_A-m} + u_B e^{m_B-m}; w = w_A e^{m_A-m} + w_B e^{m_B-m}
    """
    m = torch.maximum(a.m, b.m)
    fa = _rescale(a.m, m)
    fb = _rescale(b.m, m)
    u = a.u * fa + b.u * fb
    w = a.w * fa.unsqueeze(-1) + b.w * fb.unsqueeze(-1)
    return AttentionState(m, u, w)


def _validate(scores: torch.Tensor, values: torch.Tensor, state: AttentionState | None) -> None:
    if not isinstance(scores, torch.Tensor) or not isinstance(values, torch.Tensor):
        raise ValueError("scores and values must be torch tensors")
    if not scores.is_floating_point() or not values.is_floating_point():
        raise ValueError(
            f"scores and values must be floating point, got {scores.dtype} and {values.dtype}"
        )
    if scores.dtype != values.dtype:
        raise ValueError(
            f"scores and values must share a dtype, got {scores.dtype} and {values.dtype}"
        )
    if scores.dim() < 1 or values.dim() != scores.dim() + 1:
        raise ValueError(
            "expected scores (..., T) and values (..., T, D); got shapes "
            f"{tuple(scores.shape)} and {tuple(values.shape)}"
        )
    if values.shape[:-1] != scores.shape:
        raise ValueError(
            f"scores {tuple(scores.shape)} and values {tuple(values.shape)} disagree on (..., T)"
        )
    if scores.shape[-1] == 0:
        raise ValueError("the sequence is empty (T = 0): pass at least one token")
    if state is not None:
        _check_state(state, scores.shape[:-1], values.shape[-1], values.dtype)


def _check_state(state: AttentionState, batch: torch.Size, d: int, dtype: torch.dtype) -> None:
    """Shapes and dtypes of ``state`` must match the tokens exactly: no broadcasting (a state
    of batch 1 would otherwise silently broadcast over a batch of B)."""
    if not (
        isinstance(state, tuple)
        and len(state) == 3
        and all(isinstance(t, torch.Tensor) for t in state)
    ):
        raise ValueError("state must be an AttentionState(m, u, w) of tensors (or None)")
    m, u, w = state
    if m.shape != batch or u.shape != batch or w.shape != (*batch, d):
        raise ValueError(
            f"state shapes m {tuple(m.shape)}, u {tuple(u.shape)}, w {tuple(w.shape)} do not "
            f"match batch {tuple(batch)} and D = {d}: expected m, u {tuple(batch)} and w "
            f"{(*batch, d)} (use empty_state(batch_shape, D) for a fresh one)"
        )
    if m.dtype != dtype or u.dtype != dtype or w.dtype != dtype:
        raise ValueError(
            f"state dtypes m {m.dtype}, u {u.dtype}, w {w.dtype} differ from the tokens' {dtype}"
        )


def _with_state(prefix: AttentionState, state: AttentionState | None) -> AttentionState:
    """Prepend an earlier state to every prefix: combine(state, prefix_k) for all k."""
    if state is None:
        return prefix
    t = prefix.m.shape[-1]
    s = AttentionState(
        state.m.unsqueeze(-1).expand(*state.m.shape, t),
        state.u.unsqueeze(-1).expand(*state.u.shape, t),
        state.w.unsqueeze(-2).expand(*state.w.shape[:-1], t, state.w.shape[-1]),
    )
    return combine(s, prefix)


def _last(prefix: AttentionState) -> AttentionState:
    return AttentionState(prefix.m[..., -1], prefix.u[..., -1], prefix.w[..., -1, :])


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------


def naive_prefix_attention(
    scores: torch.Tensor, values: torch.Tensor, state: AttentionState | None = None
) -> tuple[torch.Tensor, AttentionState]:
    """O(T^2) reference: a causally masked softmax over all prefixes at once."""
    _validate(scores, values, state)
    t = scores.shape[-1]
    causal = torch.ones(t, t, dtype=torch.bool, device=scores.device).tril()
    s = scores.unsqueeze(-2).expand(*scores.shape[:-1], t, t)  # (..., T_query, T_key)
    s = s.masked_fill(~causal, -math.inf)
    m = s.amax(dim=-1)  # (..., T) prefix maxima
    p = torch.exp(s - m.unsqueeze(-1))
    prefix = AttentionState(m, p.sum(-1), p @ values)
    prefix = _with_state(prefix, state)
    return prefix.output(), _last(prefix)


def sequential_prefix_attention(
    scores: torch.Tensor, values: torch.Tensor, state: AttentionState | None = None
) -> tuple[torch.Tensor, AttentionState]:
    """Reference RNN form: ``attention_step`` applied token by token."""
    _validate(scores, values, state)
    outs = []
    for i in range(scores.shape[-1]):
        o, state = attention_step(scores[..., i], values[..., i, :], state)
        outs.append(o)
    return torch.stack(outs, dim=-2), state


# ---------------------------------------------------------------------------------------------
# Parallel paths
# ---------------------------------------------------------------------------------------------


def _hillis_steele(scores: torch.Tensor, values: torch.Tensor) -> AttentionState:
    """Inclusive log-depth scan of the leaves (s_i, 1, v_i) under ``combine``."""
    m, u, w = scores, torch.ones_like(scores), values
    t = scores.shape[-1]
    offset = 1
    while offset < t:
        # Element i combines with element i - offset (its left neighbour at this level);
        # the first ``offset`` elements are already complete prefixes.
        left = AttentionState(m[..., :-offset], u[..., :-offset], w[..., :-offset, :])
        right = AttentionState(m[..., offset:], u[..., offset:], w[..., offset:, :])
        merged = combine(left, right)
        m = torch.cat([m[..., :offset], merged.m], dim=-1)
        u = torch.cat([u[..., :offset], merged.u], dim=-1)
        w = torch.cat([w[..., :offset, :], merged.w], dim=-2)
        offset *= 2
    return AttentionState(m, u, w)


def _masked_exp(x: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, p) over the last axis of ``x`` (..., J, I) where ``keep`` (J, I) allows: m the
    largest kept entry of each row (-inf for a row with none), p = exp(x - m) there and 0
    elsewhere (a row with none: all 0, and no NaN reaches the gradients)."""
    masked = x.masked_fill(~keep, -math.inf)
    m = masked.amax(dim=-1)
    m_safe = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return m, torch.exp(masked - m_safe.unsqueeze(-1))


def _exclusive_carry(totals: AttentionState) -> AttentionState:
    """The summary of chunks ``0 .. j-1`` for every chunk j, from the chunks' own summaries
    (m, u: (..., N); w: (..., N, D)); chunk 0 gets the empty summary (m = -inf, u = w = 0).

    Dense over the N x N chunk pairs, as inside a chunk: the largest earlier m, then each
    earlier chunk's u and w rescaled to it and summed. What folding ``combine`` over the
    chunks one by one gives, in a few whole-tensor operations instead of ~10 per chunk (at
    T = 3000 that Python loop took 9.6 of the scan's 41.7 ms forward + backward, docs/core.md).
    """
    m = totals.m
    n = m.shape[-1]
    earlier = torch.ones(n, n, dtype=torch.bool, device=m.device).tril(-1)  # i < j
    m_carry, p = _masked_exp(m.unsqueeze(-2).expand(*m.shape, n), earlier)  # p: (..., j, i)
    u_carry = (p @ totals.u.unsqueeze(-1)).squeeze(-1)
    return AttentionState(m_carry, u_carry, p @ totals.w)


def _chunked(scores: torch.Tensor, values: torch.Tensor, chunk: int) -> AttentionState:
    """Dense masked softmax inside chunks, the combine operator across chunks.

    Pads T up to a multiple of ``chunk`` with score -inf (a padded token has weight 0 and,
    being on the right, never enters a real prefix).
    """
    *batch, t = scores.shape
    d = values.shape[-1]
    c = min(chunk, t)
    n = -(-t // c)
    pad = n * c - t
    if pad:
        scores = torch.nn.functional.pad(scores, (0, pad), value=-math.inf)
        values = torch.nn.functional.pad(values, (0, 0, 0, pad))
    s = scores.reshape(*batch, n, c)  # (..., N, C)
    v = values.reshape(*batch, n, c, d)  # (..., N, C, D)

    causal = torch.ones(c, c, dtype=torch.bool, device=scores.device).tril()
    # m_in (..., N, C): max within the chunk prefix; p (..., N, C, C). Padded rows (all
    # -inf) are sliced away at the end; _masked_exp keeps them finite.
    m_in, p = _masked_exp(s.unsqueeze(-2).expand(*batch, n, c, c), causal)
    u_in = p.sum(-1)
    w_in = p @ v  # (..., N, C, D)

    if n > 1:
        totals = AttentionState(m_in[..., -1], u_in[..., -1], w_in[..., -1, :])  # per chunk
        cm, cu, cw = _exclusive_carry(totals)  # (..., N), (..., N), (..., N, D)
        carry = AttentionState(
            cm.unsqueeze(-1).expand(*batch, n, c),
            cu.unsqueeze(-1).expand(*batch, n, c),
            cw.unsqueeze(-2).expand(*batch, n, c, d),
        )
        prefix = combine(carry, AttentionState(m_in, u_in, w_in))
        m_in, u_in, w_in = prefix
    m_out = m_in.reshape(*batch, n * c)[..., :t]
    u_out = u_in.reshape(*batch, n * c)[..., :t]
    w_out = w_in.reshape(*batch, n * c, d)[..., :t, :]
    return AttentionState(m_out, u_out, w_out)


def prefix_attention(
    scores: torch.Tensor,
    values: torch.Tensor,
    state: AttentionState | None = None,
    method: str = "chunked",
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[torch.Tensor, AttentionState]:
    """Causal softmax attention of one query over every prefix, in parallel.

    Args:
        scores: (..., T) attention scores ``q . k_i / sqrt(d)``.
        values: (..., T, D) values.
        state: optional summary of earlier tokens; its tokens count as coming before these.
        method: one of ``METHODS`` (all give the same result up to rounding).
        chunk_size: chunk length for ``"chunked"``.

    Returns:
        ``(out, state)``: out (..., T, D), ``out[..., t, :]`` the softmax(scores[..., :t+1])
        weighted mean of values[..., :t+1, :] (after the earlier tokens of ``state``); and
        the ``AttentionState`` of everything seen.

    Example:
        >>> s, v = torch.randn(2, 5), torch.randn(2, 5, 3)
        >>> out, st = prefix_attention(s, v)
        >>> out2, _ = prefix_attention(s[:, 2:], v[:, 2:], prefix_attention(s[:, :2], v[:, :2])[1])
        >>> torch.allclose(out[:, 2:], out2, atol=1e-6)
        True
    """
    if _autocasting(scores):  # mixed precision: the scan itself stays float32 (module doc)
        with torch.autocast(scores.device.type, enabled=False):
            return prefix_attention(_upcast(scores), _upcast(values), state, method, chunk_size)
    if method == "naive":
        return naive_prefix_attention(scores, values, state)
    if method == "sequential":
        return sequential_prefix_attention(scores, values, state)
    _validate(scores, values, state)
    if method == "chunked":
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        prefix = _chunked(scores, values, chunk_size)
    elif method == "hillis_steele":
        prefix = _hillis_steele(scores, values)
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    prefix = _with_state(prefix, state)
    return prefix.output(), _last(prefix)


def attention_step(
    score: torch.Tensor, value: torch.Tensor, state: AttentionState | None = None
) -> tuple[torch.Tensor, AttentionState]:
    """One token of the recurrence, O(1) time and memory (docs/design.md §3, many-to-one).

        m_k = max(m_{k-1}, s_k)
        c_k = c_{k-1} exp(m_{k-1} - m_k) + exp(s_k - m_k)
        a_k = a_{k-1} exp(m_{k-1} - m_k) + v_k exp(s_k - m_k)

    Args:
        score: (...,) the new token's score.
        value: (..., D) its value.
        state: summary of earlier tokens, or None for the first token.

    Returns:
        ``(out, state)`` with out (..., D).
    """
    if not isinstance(score, torch.Tensor) or not isinstance(value, torch.Tensor):
        raise ValueError("score and value must be torch tensors")
    if _autocasting(score):  # mixed precision: the recurrence stays float32 (module doc)
        with torch.autocast(score.device.type, enabled=False):
            return attention_step(_upcast(score), _upcast(value), state)
    if value.dim() != score.dim() + 1 or value.shape[:-1] != score.shape:
        raise ValueError(
            f"expected score (...,) and value (..., D); got {tuple(score.shape)} and "
            f"{tuple(value.shape)}"
        )
    if not score.is_floating_point() or score.dtype != value.dtype:
        raise ValueError(f"score and value must share a float dtype: {score.dtype}, {value.dtype}")
    if state is None:
        return value, AttentionState(score, torch.ones_like(score), value)
    _check_state(state, score.shape, value.shape[-1], value.dtype)
    new = combine(state, AttentionState(score, torch.ones_like(score), value))
    return new.output(), new
