"""The decision model: Decision Transformer (Chen et al. 2021) with a swappable backbone.

Tokens are interleaved per timestep as ``(R_t, s_t, a_t)`` where ``R_t`` is the
return-to-go; each modality has a linear embedding, a learned timestep embedding is added to
all three tokens of a step, then LayerNorm (as the official DT ``embed_ln``) and dropout.
The action for step t is read (tanh head) from the backbone output at the state token
``s_t``: it sees ``R_<=t, s_<=t, a_<t``. Loss: MSE on actions at real positions.

Discrete actions (``discrete=True``, ``act_dim`` = the number of choices): actions are one-hot
vectors (so the action token is the same linear embedding, of a one-hot), the head gives
logits, the loss is cross-entropy, and acting takes the argmax (or samples, with
``sample_actions``). :meth:`DecisionModel.action_loss` picks the loss; trainers only call it.

Nothing but the backbone differs between ``backbone="aaren"`` and ``"transformer"``.

Acting, one environment step at a time (recurrent mode):

    action, state = model.act(obs, rtg, t, state)      # feeds R_t, s_t
    state = model.observe_action(action, t, state)     # feeds a_t

so a whole episode is carried in ``state`` (constant size for Aaren, a growing KV cache for
the Transformer).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from aaren_rl.aaren_policy.backbone import (
    ACTIVATION_BEFORE_THE_FIELD,
    BACKBONES,
    MAX_CHUNK,
    Backbone,
    BackboneConfig,
    Dropout,
    make_backbone,
)

__all__ = ["DecisionModel", "DecisionModelConfig", "to_left_padding"]


def greedy_one_hot(logits: torch.Tensor) -> torch.Tensor:
    """(B, n) logits -> (B, n) one-hot of the argmax (as an equality with the max: the same
    graph in PyTorch and ONNX; exact float ties, which argmax would break, do not occur)."""
    return (logits == logits.amax(dim=-1, keepdim=True)).to(logits.dtype)


MAX_SIZE = 1 << 24  # obs_dim, act_dim, max_timestep: larger is a corrupt config


@dataclass
class DecisionModelConfig:
    """Shape of a decision model."""

    obs_dim: int
    """Observation size."""
    act_dim: int
    """Action size (actions are assumed in [-1, 1], as in MuJoCo)."""
    backbone: str = "aaren"
    """Sequence backbone: "aaren" or "transformer"."""
    net: BackboneConfig = field(default_factory=BackboneConfig)
    """Backbone size (dim, layers, heads, ffn, dropout)."""
    max_timestep: int = 1000
    """Rows of the timestep embedding; later timesteps reuse the last row."""
    state_encoder: Literal["linear", "mlp"] = "linear"
    """Observation embedding: linear (DT) or mlp (Linear, ReLU, Linear with
    ``state_encoder_hidden`` hidden units: d3rlpy's default VectorEncoder shape)."""
    state_encoder_hidden: int = 128
    """Hidden width of the mlp state encoder."""
    embed_init: Literal["gpt2", "torch"] = "torch"
    """Initialisation of the input embeddings (return, state, action) and the action head.
    gpt2: N(0, 0.02) weights and zero biases, like the backbone. torch: PyTorch's default
    Linear init (uniform in +-1/sqrt(fan_in), biases too), as official DT and d3rlpy leave
    them; a non-zero bias keeps the return's magnitude through ``embed_ln``. Only the initial
    weights differ: a checkpoint loads the same either way."""
    return_in_state_token: bool = False
    """Add a linear embedding of ``R_t`` to the state token ``s_t`` too (the return token
    stays). The action is read at ``s_t``, so the return it is asked for then reaches it
    through the residual stream, not only through attention: an Aaren layer's attention
    with a learned, input-independent query cannot single out the latest ``R_t`` among a
    whole episode's tokens (docs/research/recipe.md, "Recurrent acting and the return")."""
    discrete: bool = False
    """Discrete actions: act_dim choices, one-hot action tokens, a categorical head (logits,
    cross-entropy loss, argmax acting). False: continuous actions in [-1, 1] (tanh, MSE)."""

    def __post_init__(self) -> None:
        if isinstance(self.net, dict):
            self.net = BackboneConfig(**self.net)
        if self.obs_dim <= 0 or self.act_dim <= 0:
            raise ValueError(
                f"obs_dim and act_dim must be positive: {self.obs_dim}, {self.act_dim}"
            )
        if self.backbone not in BACKBONES:
            raise ValueError(
                f"unknown backbone {self.backbone!r}; choose one of {sorted(BACKBONES)}"
            )
        if self.max_timestep <= 0:
            raise ValueError(f"max_timestep must be positive, got {self.max_timestep}")
        sizes = {
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "max_timestep": self.max_timestep,
        }
        for name, value in sizes.items():  # checked before any weight is allocated
            if value > MAX_SIZE:
                raise ValueError(f"{name} must be at most {MAX_SIZE}, got {value}")
        if not 1 <= self.net.chunk_size <= MAX_CHUNK:  # here: aaren-train names its own flag
            raise ValueError(f"chunk_size must be in [1, {MAX_CHUNK}], got {self.net.chunk_size}")
        if self.state_encoder not in ("linear", "mlp"):
            raise ValueError(f"state_encoder must be linear or mlp, got {self.state_encoder!r}")
        if self.embed_init not in ("gpt2", "torch"):
            raise ValueError(f"embed_init must be gpt2 or torch, got {self.embed_init!r}")
        if self.state_encoder_hidden <= 0:
            raise ValueError(
                f"state_encoder_hidden must be positive, got {self.state_encoder_hidden}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DecisionModelConfig:
        """From a saved config (a checkpoint's ``model_config``). A saved backbone config
        without ``activation`` predates the field, when every model was GELU: it stays GELU
        whatever today's default."""
        net = d.get("net")
        if isinstance(net, dict) and "activation" not in net:
            d = {**d, "net": {**net, "activation": ACTIVATION_BEFORE_THE_FIELD}}
        return cls(**d)


class DecisionModel(nn.Module):
    """Decision Transformer with an Aaren or Transformer backbone.

    Example:
        >>> cfg = DecisionModelConfig(obs_dim=11, act_dim=3, net=BackboneConfig(dim=32))
        >>> model = DecisionModel(cfg)
        >>> B, K = 2, 5
        >>> a, _ = model(torch.zeros(B, K, 1), torch.zeros(B, K, 11), torch.zeros(B, K, 3),
        ...              torch.arange(K).expand(B, K))
        >>> a.shape
        torch.Size([2, 5, 3])
    """

    def __init__(self, config: DecisionModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.net.dim
        self.embed_timestep = nn.Embedding(config.max_timestep, d)
        self.embed_return = nn.Linear(1, d)
        self.embed_state: nn.Module
        if config.state_encoder == "mlp":
            hid = config.state_encoder_hidden
            self.embed_state = nn.Sequential(
                nn.Linear(config.obs_dim, hid), nn.ReLU(), nn.Linear(hid, d)
            )
        else:
            self.embed_state = nn.Linear(config.obs_dim, d)
        self.embed_action = nn.Linear(config.act_dim, d)
        self.embed_state_return = (
            nn.Linear(1, d, bias=False) if config.return_in_state_token else None
        )
        self.embed_ln = nn.LayerNorm(d)
        self.embed_drop = Dropout(config.net.dropout)
        self.backbone: Backbone = make_backbone(config.backbone, config.net)
        head: list[nn.Module] = [nn.Linear(d, config.act_dim)]
        self.action_head = nn.Sequential(*(head if config.discrete else head + [nn.Tanh()]))
        self.sample_actions = False  # discrete acting: sample from the logits, not argmax
        self.apply(self._init_weights)
        if config.embed_init == "torch":  # official DT / d3rlpy: these keep PyTorch's init
            parts = [self.embed_return, self.embed_state, self.embed_action, self.action_head]
            if self.embed_state_return is not None:
                parts.append(self.embed_state_return)
            for part in parts:
                for m in part.modules():
                    if isinstance(m, nn.Linear):
                        m.reset_parameters()

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # GPT-2 / DT initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)

    def _time(self, timesteps: torch.Tensor) -> torch.Tensor:
        return self.embed_timestep(timesteps.clamp(0, self.config.max_timestep - 1))

    def _token(self, emb: torch.Tensor) -> torch.Tensor:
        return self.embed_drop(self.embed_ln(emb))

    def _state_embedding(
        self, observations: torch.Tensor, returns_to_go: torch.Tensor
    ) -> torch.Tensor:
        s = self.embed_state(observations)
        if self.embed_state_return is not None:
            s = s + self.embed_state_return(returns_to_go)
        return s

    def forward(
        self,
        returns_to_go: torch.Tensor,
        observations: torch.Tensor,
        actions: torch.Tensor,
        timesteps: torch.Tensor,
        state: tuple | None = None,
        mask: torch.Tensor | None = None,
        memory_horizon: int = 0,
    ) -> tuple[torch.Tensor, tuple]:
        """Parallel path over K timesteps (3K tokens): the head applied to :meth:`features`.

        Args:
            returns_to_go: (B, K, 1), already scaled.
            observations: (B, K, obs_dim), already normalised.
            actions: (B, K, act_dim).
            timesteps: (B, K) int64.
            state: backbone state of earlier tokens (continuation), or None.
            mask: optional (B, K) bool, True at real timesteps. Needed only for left
                padding: the padded timesteps' tokens are then kept out of every real
                position's attention. Right padding needs none (the backbones are causal).
            memory_horizon: Aaren only: H > 0 trains as the agent acts with
                ``memory_horizon=H`` (see :meth:`features`); 0: exact attention.

        Returns:
            ``(action_preds, state)``: (B, K, act_dim) predictions read at the state tokens,
            and the backbone state after all 3K tokens.
        """
        y, state = self.features(
            returns_to_go, observations, actions, timesteps, state, mask, memory_horizon
        )
        return self.action_head(y), state  # read at s_t (logits when discrete)

    def features(
        self,
        returns_to_go: torch.Tensor,
        observations: torch.Tensor,
        actions: torch.Tensor,
        timesteps: torch.Tensor,
        state: tuple | None = None,
        mask: torch.Tensor | None = None,
        memory_horizon: int = 0,
    ) -> tuple[torch.Tensor, tuple]:
        """:meth:`forward` without the action head: ``(y, state)``, y (B, K, dim) the backbone
        output at the state tokens (what a stochastic head, e.g. a log-std, reads too).

        ``memory_horizon`` H > 0 (Aaren, from an empty state): the parallel path forgets as
        acting recurrently with ``memory_horizon=H`` does. Acting ages the state by 1/H per
        timestep, and ``a_t`` enters after that aging, so ``R_t`` and ``s_t`` count with
        timestep t and ``a_t`` with t + 1 (``aaren_policy.fused.memory_decay``); here each
        token's score gains its clock / H instead, which gives every query the same
        softmax. Train as you act: the outputs equal the recurrent step's under that horizon
        (``tests/aaren_policy/test_train_horizon.py``)."""
        b, k, _ = observations.shape
        if returns_to_go.shape != (b, k, 1) or actions.shape != (b, k, self.config.act_dim):
            raise ValueError(
                f"inconsistent shapes: rtg {tuple(returns_to_go.shape)}, obs "
                f"{tuple(observations.shape)}, actions {tuple(actions.shape)}"
            )
        if observations.shape[-1] != self.config.obs_dim:
            raise ValueError(
                f"observations have {observations.shape[-1]} features, the model {self.config.obs_dim}"
            )
        time = self._time(timesteps)  # (B, K, d)
        r = self.embed_return(returns_to_go) + time
        s = self._state_embedding(observations, returns_to_go) + time
        a = self.embed_action(actions) + time
        x = torch.stack([r, s, a], dim=2).reshape(b, 3 * k, -1)  # (B, 3K, d): R1 s1 a1 R2 ...
        token_mask = None if mask is None else mask.repeat_interleave(3, dim=1)  # (B, 3K)
        bias = None
        if memory_horizon:
            from aaren_rl.aaren_policy.fused import check_memory_horizon  # fused imports us

            bias = _horizon_bias(timesteps, check_memory_horizon(memory_horizon))
        y, state = self.backbone(self._token(x), state, token_mask, bias)
        return y.view(b, k, 3, -1)[:, :, 1], state  # (B, K, d) at s_t

    def action_loss(
        self,
        preds: torch.Tensor,
        actions: torch.Tensor,
        mask: torch.Tensor,
        weights: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """The training loss over real positions, in float32: squared error, or
        cross-entropy when ``discrete``.

        Args:
            preds: (B, K, act_dim) from :meth:`forward`.
            actions: (B, K, act_dim) dataset actions (one-hot when ``discrete``).
            mask: (B, K) bool, True at real positions.
            weights: (B, K) optional per-position weights (e.g. a decision step weighted
                up); the loss is the weighted mean over real positions.
            reduction: squared error over action dimensions, "mean" (DT) or "sum"
                (d3rlpy); positions are always averaged. Unused when ``discrete``.
        """
        if self.config.discrete:
            logp = torch.log_softmax(preds.float(), dim=-1)
            per_pos = -(logp * actions.to(logp.dtype)).sum(-1)  # (B, K) cross-entropy
        else:
            err = (preds.float() - actions.float()) ** 2
            per_pos = err.sum(-1) if reduction == "sum" else err.mean(-1)  # (B, K)
        m = mask.to(per_pos.dtype)
        if weights is not None:
            m = m * weights.to(per_pos.dtype)
        return (per_pos * m).sum() / m.sum().clamp_min(1e-8)

    def to_action(self, head_out: torch.Tensor) -> torch.Tensor:
        """Head output (B, act_dim) -> the action the agent takes and feeds back as a token:
        unchanged (tanh) for continuous actions; one-hot of the argmax (or of a sample when
        ``sample_actions``) for discrete ones."""
        if not self.config.discrete:
            return head_out
        if self.sample_actions:
            ids = torch.multinomial(torch.softmax(head_out.float(), dim=-1), 1).squeeze(-1)
            return nn.functional.one_hot(ids, self.config.act_dim).to(head_out.dtype)
        return greedy_one_hot(head_out)

    # ---- acting, one environment step at a time ------------------------------------------

    def act(
        self,
        observation: torch.Tensor,
        returns_to_go: torch.Tensor,
        timestep: torch.Tensor,
        state: tuple | None = None,
    ) -> tuple[torch.Tensor, tuple]:
        """Feed ``R_t`` and ``s_t``; return the action and the state.

        The argument order (observation, return-to-go, timestep, state) is the fused step's
        and the exported ONNX graph's.

        Args:
            observation: (B, obs_dim) normalised observation.
            returns_to_go: (B, 1) scaled return-to-go.
            timestep: (B,) int64.
            state: backbone state (None or ``init_state`` at an episode's start).

        Returns:
            ``(action, state)``: action (B, act_dim) in [-1, 1] (one-hot when ``discrete``).
        """
        y, state = self.act_features(observation, returns_to_go, timestep, state)
        return self.to_action(self.action_head(y)), state

    def act_features(
        self,
        observation: torch.Tensor,
        returns_to_go: torch.Tensor,
        timestep: torch.Tensor,
        state: tuple | None = None,
    ) -> tuple[torch.Tensor, tuple]:
        """:meth:`act` without the action head: ``(y, state)``, y (B, dim) the backbone
        output at ``s_t``. The caller picks the action and feeds it with
        :meth:`observe_action`."""
        time = self._time(timestep)
        _, state = self.backbone.step(self._token(self.embed_return(returns_to_go) + time), state)
        s = self._state_embedding(observation, returns_to_go) + time
        return self.backbone.step(self._token(s), state)

    def observe_action(self, action: torch.Tensor, timestep: torch.Tensor, state: tuple) -> tuple:
        """Feed ``a_t`` (B, act_dim) after acting; returns the state."""
        token = self._token(self.embed_action(action) + self._time(timestep))
        _, state = self.backbone.step(token, state)
        return state

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> tuple:
        return self.backbone.init_state(batch_size, device)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def to_left_padding(
    mask: torch.Tensor, *tensors: torch.Tensor
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Turn a right-padded batch into a left-padded one (DT's and d3rlpy's layout).

    Each row's real prefix is rotated to the end of the window, so padding comes first.
    The model must then get the returned mask (``DecisionModel.forward(..., mask=)``) so
    the padded tokens stay out of every real position's attention.

    Args:
        mask: (B, K) bool, True at real positions, each row a prefix of Trues.
        tensors: (B, K, ...) tensors laid out like ``mask``.

    Returns:
        ``(mask, tensors)`` rotated: ``mask[b]`` a suffix of Trues.
    """
    b, k = mask.shape
    shift = k - mask.sum(1, keepdim=True)  # (B, 1) padded positions per row
    pos = torch.arange(k, device=mask.device).unsqueeze(0)  # (1, K)
    src = (pos - shift) % k  # (B, K): new position j takes old position j - shift
    out = []
    for t in tensors:
        idx = src.view(b, k, *([1] * (t.dim() - 2))).expand_as(t)
        out.append(torch.gather(t, 1, idx))
    return pos >= shift, tuple(out)


def _horizon_bias(timesteps: torch.Tensor, horizon: int) -> torch.Tensor:
    """(B, 3K) score bias of a memory horizon: each token's clock / H, the clock counted from
    the window's first timestep (a constant per sequence leaves every softmax unchanged and
    keeps the scores small): R_t and s_t count with t, a_t with t + 1."""
    t = (timesteps - timesteps[:, :1]).to(torch.float64)  # (B, K)
    clock = torch.stack([t, t, t + 1], dim=2).reshape(t.shape[0], -1)  # (B, 3K)
    return clock / horizon  # float64: the layer casts it to its scores' dtype
