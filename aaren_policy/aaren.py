"""The Aaren layer: attention with a learned query token, computed as an RNN.

Feng et al. 2024, §3.3: each layer owns a query token ``q`` (per head); keys and values
come from the input tokens, and output ``i`` is attention of ``q`` over tokens ``1..i``.
Because ``q`` never depends on the input, the layer is causal by construction and its
state per head is the triple ``(m, u, w)`` of ``aaren_policy.scan``: two scalars and one
vector of the head size, whatever the sequence length.

Parameterisation: the query token passes through the usual query projection (the paper's
parameter count, 3,152,896 vs 3,152,384 for the Transformer at d = 512, is exactly one
extra d-vector per layer). Since ``q`` is fixed, keys only matter through ``q_h . k_h``, so
the scores are computed with the folded vector ``W_k_h^T q_h`` (H x d) instead of the
whole key projection (d x d): the same function of the same parameters, T*d*H instead of
T*d^2 multiply-adds. (The key bias only adds ``q_h . b_k`` to every score of head h, a
constant that cancels in the softmax: it is kept so the parameter set matches the
Transformer's; its gradient is zero up to rounding.)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from aaren_rl.aaren_policy.scan import (
    DEFAULT_CHUNK,
    MASKED,
    AttentionState,
    attention_step,
    empty_state,
    prefix_attention,
)

__all__ = ["Aaren"]


class Aaren(nn.Module):
    """Multi-head Aaren attention.

    Args:
        dim: model width.
        num_heads: heads; ``dim`` must be divisible by it.
        bias: biases on the projections.
        scan_method: ``aaren_policy.scan`` method for the parallel path.
        chunk_size: chunk length for the ``"chunked"`` scan.
        query_init_std: standard deviation of the query token at initialisation.
        recency_init: initial recency slope (0: none; BackboneConfig.recency_init).
        recency_fixed: keep the slopes at their initial values (not learned).
        recency_multiscale: head h starts at ``recency_init / 2**h`` (else all alike).

    Example:
        >>> layer = Aaren(16, 2)
        >>> y, state = layer(torch.randn(3, 7, 16))
        >>> y.shape, state.w.shape
        (torch.Size([3, 7, 16]), torch.Size([3, 2, 8]))
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        bias: bool = True,
        scan_method: str = "chunked",
        chunk_size: int = DEFAULT_CHUNK,
        query_init_std: float = 0.02,
        recency_init: float = 0.0,
        recency_fixed: bool = False,
        recency_multiscale: bool = False,
        score_jitter: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= score_jitter < 1.0:
            raise ValueError(f"score_jitter must be in [0, 1), got {score_jitter}")
        self.score_jitter = score_jitter
        if dim <= 0 or num_heads <= 0 or dim % num_heads:
            raise ValueError(f"dim ({dim}) must be a positive multiple of num_heads ({num_heads})")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scan_method = scan_method
        self.chunk_size = chunk_size
        self.query = nn.Parameter(torch.randn(dim) * query_init_std)  # the learned query token
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(dim, dim, bias=bias)
        self.v_proj = nn.Linear(dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        # Recency slope per head, lambda = softplus(recency) > 0; absent when recency_init = 0.
        self.recency: nn.Parameter | None = None
        if recency_init > 0:
            lam = torch.full((num_heads,), float(recency_init), dtype=torch.float64)
            if recency_multiscale:
                lam = lam * 0.5 ** torch.arange(num_heads, dtype=torch.float64)
            inv = lam + torch.log(-torch.expm1(-lam))  # softplus^-1
            self.recency = nn.Parameter(inv.float(), requires_grad=not recency_fixed)

    def recency_slope(self) -> torch.Tensor | None:
        """lambda (H,) of the recency bias (token i's score + lambda * i), or None."""
        return None if self.recency is None else nn.functional.softplus(self.recency)

    @staticmethod
    def _older(state: AttentionState | None, shift: torch.Tensor | None) -> AttentionState | None:
        """The state with every score lowered by ``shift``: seen from ``k`` tokens later under
        recency slopes (``shift`` = k * lambda, (H,)), or from a score bias's last token ((B, 1))."""
        if state is None or shift is None:
            return state
        return AttentionState(state.m - shift.to(state.m.dtype), state.u, state.w)

    def score_projection(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Folded score weights: ``s_h(x) = x . W[h] + b[h]`` equals ``q_h . k_h(x) / sqrt(dh)``.

        Returns:
            ``(W, b)`` with W (H, dim) and b (H,) (None without biases).
        """
        h, dh = self.num_heads, self.head_dim
        q = self.q_proj(self.query).view(h, dh)  # (H, dh)
        scale = 1.0 / math.sqrt(dh)
        w = torch.einsum("hd,hde->he", q, self.k_proj.weight.view(h, dh, self.dim)) * scale
        b = None
        if self.k_proj.bias is not None:
            b = (q * self.k_proj.bias.view(h, dh)).sum(-1) * scale
        return w, b

    def _check_dtype(self, x: torch.Tensor) -> None:
        if x.dtype != self.query.dtype:
            raise ValueError(
                f"input dtype {x.dtype} differs from the layer's {self.query.dtype}: cast the "
                "input (or the layer, e.g. layer.double())"
            )

    def _scores_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Scores in the layer's own precision even under autocast: they enter exp(), where a
        # bf16 score (3 significant digits) of size 10 would move a weight by ~4%; with the
        # folded query they cost only H columns. Values follow autocast (the big matmul).
        with torch.autocast(x.device.type, enabled=False):
            w, b = self.score_projection()
            scores = nn.functional.linear(x.to(w.dtype), w, b)  # (..., H)
        values = self.v_proj(x).to(scores.dtype)  # (..., dim); the scan runs in float32
        return scores, values.view(*x.shape[:-1], self.num_heads, self.head_dim)

    def forward(
        self,
        x: torch.Tensor,
        state: AttentionState | None = None,
        mask: torch.Tensor | None = None,
        score_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, AttentionState]:
        """Parallel path over a sequence.

        Args:
            x: (B, T, dim) input tokens.
            state: optional ``AttentionState`` with m, u (B, H) and w (B, H, dh) from
                earlier tokens.
            mask: optional (B, T) bool, True at real tokens; the others (left padding) get
                the score ``MASKED`` and so weight exactly 0 in every prefix that holds a
                real token (DESIGN: padded tokens must never enter a real prefix).
            score_bias: optional (B, T) added to every head's score of each token: with
                ``clock / H`` (a token's timestep clock over a memory horizon H) it is the
                forgetting that acting with that horizon applies, in the parallel path
                (``DecisionModel.features(memory_horizon=H)``). Only from an empty state;
                the returned state is then seen from the last token's bias (as the
                recurrent path's, which ages its state instead).

        Returns:
            ``(y, state)``: y (B, T, dim); the state after the T tokens.
        """
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected x of shape (B, T, {self.dim}), got {tuple(x.shape)}")
        self._check_dtype(x)
        bsz, t, _ = x.shape
        if score_bias is not None and (state is not None or score_bias.shape != (bsz, t)):
            raise ValueError(
                f"score_bias must be (B, T) = {(bsz, t)} and start from an empty state, got "
                f"{tuple(score_bias.shape)} with {'a' if state is not None else 'no'} state"
            )
        scores, values = self._scores_values(x)  # (B, T, H), (B, T, H, dh)
        if self.training and self.score_jitter > 0:  # flatter attention, training only
            scale = 1.0 - self.score_jitter * torch.rand(bsz, 1, self.num_heads, device=x.device)
            scores = scores * scale.to(scores.dtype)
        lam = self.recency_slope()
        if lam is not None:  # token i gets + lambda i; the carried state is one token older
            pos = torch.arange(t, device=x.device, dtype=scores.dtype)
            scores = scores + pos.unsqueeze(-1) * lam.to(scores.dtype)
            state = self._older(state, lam)
        if score_bias is not None:  # the same forgetting in every head
            scores = scores + score_bias.unsqueeze(-1).to(scores.dtype)
        if mask is not None:
            scores = scores.masked_fill(~mask.unsqueeze(-1), MASKED)
        out, state = prefix_attention(
            scores.transpose(1, 2),  # (B, H, T)
            values.transpose(1, 2),  # (B, H, T, dh)
            state,
            method=self.scan_method,
            chunk_size=self.chunk_size,
        )
        if lam is not None:  # back to scores as seen from the last token
            state = self._older(state, lam * (t - 1))
        if score_bias is not None:  # seen from the last token's bias, (B, 1) per head
            state = self._older(state, score_bias[:, -1:])
        y = self.out_proj(out.transpose(1, 2).reshape(bsz, t, self.dim))
        return y, state

    def step(
        self, x_t: torch.Tensor, state: AttentionState | None = None
    ) -> tuple[torch.Tensor, AttentionState]:
        """One token, O(1) time and memory.

        Args:
            x_t: (B, dim) the new token.
            state: the state after the earlier tokens, or None at the start.

        Returns:
            ``(y_t, state)`` with y_t (B, dim).
        """
        if x_t.dim() != 2 or x_t.shape[-1] != self.dim:
            raise ValueError(f"expected x_t of shape (B, {self.dim}), got {tuple(x_t.shape)}")
        self._check_dtype(x_t)
        scores, values = self._scores_values(x_t)  # (B, H), (B, H, dh)
        out, state = attention_step(scores, values, self._older(state, self.recency_slope()))
        return self.out_proj(out.reshape(x_t.shape[0], self.dim)), state

    def init_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> AttentionState:
        """The empty state (no tokens yet) for ``batch_size`` sequences."""
        return empty_state((batch_size, self.num_heads), self.head_dim, dtype, device)
