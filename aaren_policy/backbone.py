"""Stacks of pre-LN residual blocks around a sequence mixer: Aaren or causal self-attention.

Both stacks share one interface (docs/style.md, "What that means for us" 2):

    y, state = backbone(x, state=None)        # x (B, T, dim), parallel
    y_t, state = backbone.step(x_t, state)    # x_t (B, dim), one token
    state = backbone.init_state(batch_size)
    state = backbone.reset_state(state, done) # restart the rows where done (B,) is True

and the same ``BackboneConfig`` gives parameter counts within one d-vector per layer
(Aaren's learned query token). Aaren's state is a tuple of ``AttentionState`` (constant
size); the Transformer's is a tuple of ``KVCache`` (grows by one slot per token).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from aaren_rl.aaren_policy.aaren import Aaren
from aaren_rl.aaren_policy.scan import DEFAULT_CHUNK, METHODS, AttentionState
from aaren_rl.aaren_policy.transformer import CausalSelfAttention, KVCache

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_BEFORE_THE_FIELD",
    "AarenBackbone",
    "Backbone",
    "BackboneConfig",
    "TransformerBackbone",
    "activation_fn",
    "make_backbone",
]

# The feed-forward block's non-linearity. "gelu" is GPT-2's exact erf form (official DT);
# "gelu_tanh" its tanh approximation (cheaper on CPU); "relu" is d3rlpy's DT choice.
ACTIVATIONS = ("gelu", "gelu_tanh", "relu")
# Every model saved before BackboneConfig had ``activation`` was GELU: a saved config without
# the field loads as this (DecisionModelConfig.from_dict, and a resumed run's config).
ACTIVATION_BEFORE_THE_FIELD = "gelu"


def activation_fn(name: str) -> Any:
    """The functional form of an activation of ``ACTIVATIONS`` (for fused / exported steps)."""
    if name == "gelu":
        return nn.functional.gelu
    if name == "gelu_tanh":
        return functools.partial(nn.functional.gelu, approximate="tanh")
    if name == "relu":
        return nn.functional.relu
    raise ValueError(f"unknown activation {name!r}; choose one of {ACTIVATIONS}")


def _activation_module(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    return nn.GELU(approximate="tanh" if name == "gelu_tanh" else "none")


MAX_DIM = 1 << 16  # bounds on sizes, checked before anything is allocated (a checkpoint's
MAX_LAYERS = 1 << 10  # config may come from anyone: refuse absurd sizes with a message, not
MAX_CHUNK = 1 << 20  # an allocator traceback)


@dataclass
class BackboneConfig:
    """Size of a backbone stack."""

    dim: int = 128
    """Model width (DT default 128)."""
    num_layers: int = 3
    """Residual blocks (DT default 3)."""
    num_heads: int = 1
    """Attention heads per block (DT default 1)."""
    ffn_dim: int | None = None
    """Hidden width of the feed-forward block; None means 4 * dim (GPT-2, DT)."""
    dropout: float = 0.1
    """Dropout on each block's residual branches (DT default 0.1)."""
    scan_method: str = "chunked"
    """Aaren only: parallel scan implementation (docs/research/scan.md has the measurements behind the choice)."""
    chunk_size: int = DEFAULT_CHUNK
    """Aaren only: chunk length of the chunked scan (64: fastest measured, docs/core.md)."""
    query_init_std: float = 0.02
    """Aaren only: standard deviation of the learned query tokens at initialisation. A score
    is a product of three small factors (query, query and key projections), so from 0.02
    the scores stay near 0 for thousands of steps and attention stays a near-uniform running
    mean (docs/research/recipe.md); 1.0 starts the query at a unit token's scale."""
    recency_init: float = 0.0
    """Aaren only: a learned recency slope per head, started at this value (0: none, and no
    parameter). Token i's score gains lambda * i, which inside the softmax over i <= T is the
    ALiBi-style penalty -lambda * (T - i): recent tokens weigh more, and the prefix scan and
    the constant-size state are unchanged (docs/research/recipe.md, "Recurrent acting and the
    return"). lambda = softplus of a learned parameter, per token."""
    recency_fixed: bool = False
    """Aaren only, with recency_init > 0: keep the slopes at their initial values instead of
    learning them: fixed decays, so training sees the same forgetting the recurrent state
    applies when acting (docs/research/horizon.md, "Train as you act")."""
    recency_multiscale: bool = False
    """Aaren only, with recency_init > 0: head h starts at recency_init / 2^h (RetNet-style
    multi-scale decays: heads with short and long memories side by side); off: every head
    starts at recency_init."""
    score_jitter: float = 0.0
    """Aaren only, training only: multiply each sequence's attention scores (per layer and
    head) by a factor drawn uniformly from [1 - score_jitter, 1]. A flatter softmax spreads
    weight the way a longer context does (a token that leads the others by a score margin d
    among N gets the weight of one leading by d among N exp((1 - c) d) at factor c), so the
    layers after it learn to read a diluted memory; acting (the step, the parallel forward in
    eval mode) is unchanged. 0: off (docs/memory.md, "Score jitter")."""
    activation: Literal["gelu", "gelu_tanh", "relu"] = "relu"
    """Feed-forward non-linearity: relu (d3rlpy's DT; the default since the 10k-step recipe
    study, docs/research/recipe.md), gelu (exact erf, GPT-2 / official DT) or gelu_tanh (its tanh
    approximation). A saved config without this field is gelu (see DecisionModelConfig)."""

    def __post_init__(self) -> None:
        if self.dim <= 0 or self.num_layers <= 0 or self.num_heads <= 0:
            raise ValueError(
                f"dim, num_layers and num_heads must be positive, got {self.dim}, "
                f"{self.num_layers}, {self.num_heads}"
            )
        limits = {"dim": (self.dim, MAX_DIM), "num_layers": (self.num_layers, MAX_LAYERS)}
        for name, (value, high) in limits.items():
            if not 1 <= value <= high:
                raise ValueError(f"{name} must be in [1, {high}], got {value}")
        if self.ffn_dim is not None and self.ffn_dim > MAX_DIM * 4:
            raise ValueError(f"ffn_dim must be at most {MAX_DIM * 4}, got {self.ffn_dim}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.scan_method not in METHODS:
            raise ValueError(f"scan_method must be one of {METHODS}, got {self.scan_method!r}")
        if self.ffn_dim is not None and self.ffn_dim <= 0:
            raise ValueError(f"ffn_dim must be positive, got {self.ffn_dim}")
        if not (math.isfinite(self.recency_init) and self.recency_init >= 0):
            raise ValueError(f"recency_init must be a finite number >= 0, got {self.recency_init}")
        if not 0.0 <= self.score_jitter < 1.0:
            raise ValueError(f"score_jitter must be in [0, 1), got {self.score_jitter}")
        if not self.query_init_std > 0:
            raise ValueError(f"query_init_std must be > 0, got {self.query_init_std}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")

    @property
    def ffn_size(self) -> int:
        return self.ffn_dim if self.ffn_dim is not None else 4 * self.dim


class Dropout(nn.Module):
    """Dropout whose random mask costs a quarter of the generator calls of ``nn.Dropout``.

    On CPU, ``nn.Dropout`` draws one random number per element (``bernoulli_``, ~6 ns per
    element on one thread): 10% of a DT training step (docs/benchmarks.md, "Which CPU"). Here
    each 64-bit draw of torch's generator gives four 16-bit lanes, and an element is dropped
    when its lane falls below round(p * 65536) of 65536: probability p to within 1 / 65536,
    kept elements scaled by the exact inverse of the keep probability, so the expectation is
    unchanged. Forward + backward at 64 x 60 x 128 on one thread: 2.8 ms against 4.7 ms.
    Deterministic under ``torch.manual_seed`` (the default generator, whose state checkpoints
    save). Identity in eval mode and at p = 0; on other devices, ``nn.functional.dropout``.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p
        self._drop_below = round(p * 65536)  # lanes 0 .. this - 1 (of 65536) are dropped

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self._drop_below == 0:
            return x
        if x.device.type != "cpu":
            return nn.functional.dropout(x, self.p, True)
        n = x.numel()
        draws = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64)
        lanes = draws.view(torch.int16)[:n].view(x.shape)  # uniform over -32768 .. 32767
        keep = lanes >= self._drop_below - 32768
        return torch.where(keep, x * (65536 / (65536 - self._drop_below)), 0.0)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Block(nn.Module):
    """Pre-LN residual block: x + mixer(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, mixer: nn.Module, config: BackboneConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.dim)
        self.mixer = mixer
        self.ln2 = nn.LayerNorm(config.dim)
        self.mlp = nn.Sequential(
            nn.Linear(config.dim, config.ffn_size),
            _activation_module(config.activation),
            nn.Linear(config.ffn_size, config.dim),
        )
        self.drop = Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        state: Any = None,
        mask: torch.Tensor | None = None,
        score_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Any]:
        if score_bias is None:
            h, state = self.mixer(self.ln1(x), state, mask)
        else:  # Aaren only (Backbone.forward checks)
            h, state = self.mixer(self.ln1(x), state, mask, score_bias=score_bias)
        x = x + self.drop(h)
        return x + self.drop(self.mlp(self.ln2(x))), state

    def step(self, x_t: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        h, state = self.mixer.step(self.ln1(x_t), state)
        x_t = x_t + self.drop(h)
        return x_t + self.drop(self.mlp(self.ln2(x_t))), state


class Backbone(nn.Module):
    """A stack of ``Block``s and a final LayerNorm; subclasses choose the mixer."""

    kind: str = ""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(
            Block(self._make_mixer(config), config) for _ in range(config.num_layers)
        )
        self.ln_f = nn.LayerNorm(config.dim)

    def _make_mixer(self, config: BackboneConfig) -> nn.Module:
        raise NotImplementedError

    def _check_state(self, state: tuple | None) -> None:
        if state is not None and len(state) != len(self.blocks):
            raise ValueError(
                f"state has {len(state)} layers, the backbone {len(self.blocks)}: pass the state "
                "this backbone returned (or init_state)"
            )

    def _check_input(self, x: torch.Tensor, shape: str) -> None:
        # Checked here, not only in the mixer: LayerNorm comes first and would raise a bare
        # RuntimeError on a dtype mismatch.
        want = 3 if shape == "(B, T, dim)" else 2
        if x.dim() != want or x.shape[-1] != self.config.dim:
            raise ValueError(
                f"expected x of shape {shape} with dim = {self.config.dim}, got {tuple(x.shape)}"
            )
        if x.dtype != self.ln_f.weight.dtype:
            raise ValueError(
                f"input dtype {x.dtype} differs from the backbone's {self.ln_f.weight.dtype}: "
                "cast the input (or the model, e.g. model.double())"
            )

    def forward(
        self,
        x: torch.Tensor,
        state: tuple | None = None,
        mask: torch.Tensor | None = None,
        score_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple]:
        """Parallel path.

        Args:
            x: (B, T, dim) tokens (right padding is safe: outputs at real positions never
                depend on later positions).
            state: per-layer states from an earlier call, or None.
            mask: optional (B, T) bool, True at real tokens. Tokens where it is False (left
                padding) are excluded from every position's attention (DESIGN: a padded
                position must never change a real one); None means all real.
            score_bias: Aaren only: (B, T) added to every layer's and head's scores (a
                memory horizon in the parallel path, ``Aaren.forward``).

        Returns:
            ``(y, state)``: y (B, T, dim), and the per-layer states after these tokens.
        """
        self._check_input(x, "(B, T, dim)")
        self._check_state(state)
        if mask is not None and (mask.shape != x.shape[:2] or mask.dtype != torch.bool):
            raise ValueError(
                f"mask must be a (B, T) = {tuple(x.shape[:2])} bool tensor, got "
                f"{tuple(mask.shape)} {mask.dtype}"
            )
        if score_bias is not None and self.kind != "aaren":
            raise ValueError(
                f"a score bias (a memory horizon in training) is for Aaren, not {self.kind}"
            )
        new_state = []
        for i, block in enumerate(self.blocks):
            x, s = block(x, None if state is None else state[i], mask, score_bias)
            new_state.append(s)
        return self.ln_f(x), tuple(new_state)

    def step(self, x_t: torch.Tensor, state: tuple | None = None) -> tuple[torch.Tensor, tuple]:
        """One token.

        Args:
            x_t: (B, dim).
            state: per-layer states, or None at the start.

        Returns:
            ``(y_t, state)`` with y_t (B, dim).
        """
        self._check_input(x_t, "(B, dim)")
        self._check_state(state)
        new_state = []
        for i, block in enumerate(self.blocks):
            x_t, s = block.step(x_t, None if state is None else state[i])
            new_state.append(s)
        return self.ln_f(x_t), tuple(new_state)

    def init_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> tuple:
        """Per-layer empty states for ``batch_size`` sequences."""
        return tuple(b.mixer.init_state(batch_size, device, dtype) for b in self.blocks)

    def reset_state(self, state: tuple, done: torch.Tensor) -> tuple:
        """Restart the rows of ``state`` where ``done`` (B,) bool is True."""
        raise NotImplementedError

    @staticmethod
    def state_nbytes(state: tuple) -> int:
        """Bytes held by a state (all layers)."""
        return sum(s.nbytes() for s in state)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class AarenBackbone(Backbone):
    """Aaren stack: constant-size recurrent state, O(1) per token."""

    kind = "aaren"

    def _make_mixer(self, config: BackboneConfig) -> nn.Module:
        return Aaren(
            config.dim,
            config.num_heads,
            scan_method=config.scan_method,
            chunk_size=config.chunk_size,
            query_init_std=config.query_init_std,
            recency_init=config.recency_init,
            recency_fixed=config.recency_fixed,
            recency_multiscale=config.recency_multiscale,
            score_jitter=config.score_jitter,
        )

    @staticmethod
    def age_state(state: tuple, decay: float) -> tuple:
        """The state one timestep later under a memory horizon: every token's score drops by
        ``decay`` (its weight by e^-decay), in every layer and head. O(1): only ``m`` moves."""
        return tuple(AttentionState(s.m - decay, s.u, s.w) for s in state)

    def reset_state(self, state: tuple, done: torch.Tensor) -> tuple:
        fresh = self.init_state(done.shape[0], done.device, state[0].w.dtype)
        out = []
        for s, f in zip(state, fresh):
            d = done.view(-1, *([1] * (s.m.dim() - 1)))
            out.append(
                AttentionState(
                    torch.where(d, f.m, s.m),
                    torch.where(d, f.u, s.u),
                    torch.where(d.unsqueeze(-1), f.w, s.w),
                )
            )
        return tuple(out)


class TransformerBackbone(Backbone):
    """GPT-style causal Transformer stack; ``step`` uses a KV cache (grows with t)."""

    kind = "transformer"

    def _make_mixer(self, config: BackboneConfig) -> nn.Module:
        return CausalSelfAttention(config.dim, config.num_heads)

    def reset_state(self, state: tuple, done: torch.Tensor) -> tuple:
        """Mask the finished rows' slots, then drop the leading slots no row still uses.

        Rows share one cache tensor, so a row that restarts mid-batch keeps its old slots
        (masked) until every row has moved past them; when all rows restart together the
        cache is emptied. The cache thus holds at most the longest running episode.
        """
        valid = state[0].valid & ~done.unsqueeze(1)  # (B, L), the same for every layer
        live = valid.any(0)  # (L,) slots some row still attends to
        first = int(live.nonzero()[0]) if bool(live.any()) else valid.shape[1]
        return tuple(KVCache(s.k[:, :, first:], s.v[:, :, first:], valid[:, first:]) for s in state)


BACKBONES: dict[str, type[Backbone]] = {"aaren": AarenBackbone, "transformer": TransformerBackbone}


def make_backbone(kind: str, config: BackboneConfig) -> Backbone:
    """Build a backbone by name (``"aaren"`` or ``"transformer"``)."""
    if kind not in BACKBONES:
        raise ValueError(f"unknown backbone {kind!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[kind](config)
