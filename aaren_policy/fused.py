"""A fused, inference-only environment step for a decision model with an Aaren backbone.

``DecisionModel.act`` + ``observe_action`` push three tokens per action through
``Backbone.step`` one at a time: about 50 small PyTorch operations per token (validation,
folding the score vector again, NamedTuple states), i.e. three sequential passes over the
layers per action. Since PyTorch's per-operation cost (~5-10 us on one CPU thread) dominates
at d = 128 (docs/design.md §6, note on acting cost), this module removes operations, not FLOPs:

1. **Constants folded once.** The learned query never depends on the input, so each layer's
   score vectors ``W_k_h^T q_h / sqrt(dh)`` (``Aaren.score_projection``) are computed at
   construction and stacked with the value projection into *one* matrix per layer:
   ``[scores | values] = LN1(x) @ W_sv^T + b_sv``. The three token embeddings are one
   block-diagonal matrix.
2. **One pass per action, not three.** The action token ``a_{t-1}`` is only needed before
   ``R_t`` arrives, so it is *deferred*: the state carries the last action and its timestep,
   and one step processes the three tokens ``[a_{t-1}, R_t, s_t]`` together through every
   layer (position-wise ops batched over the 3 tokens). The token order seen by the model
   is exactly the recurrent path's ``R_1 s_1 a_1 R_2 s_2 a_2 ...``; only the moment ``a_t``
   is absorbed moves (to the next call). At an episode's start there is no previous action:
   its score is set to ``MASKED`` so its weight ``exp(MASKED - m)`` is exactly 0.
3. **An exact causal combine over the 3 new tokens** with the carried ``(m, u, w)``
   (docs/design.md §3): each prefix ``k`` gets its own maximum ``M_k = max(m, s_1..s_k)`` (a
   masked reduction, not ``cummax`` + ``cumsum``), then

       u_k = u e^{m - M_k} + sum_{i<=k} e^{s_i - M_k}
       w_k = w e^{m - M_k} + sum_{i<=k} e^{s_i - M_k} v_i,    o_k = w_k / u_k

   The last layer only needs the state token's output, so its ``out_proj``/MLP run on one
   row and ``a``/``R`` skip them.

State is flat tensors (ONNX friendly): ``m, u`` (B, L, H), ``w`` (B, L, H, dh), the pending
action (B, act_dim) and its timestep (B,) int64 (-1: none, a fresh episode).

Eval only: dropout is the identity here (as in ``model.eval()``). Equivalence with
``DecisionModel.act/observe_action`` and with the parallel forward is tested in
tests/aaren_policy/test_fused.py (1e-5 in float32, 1e-10 in float64).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aaren_rl.aaren_policy.aaren import Aaren
from aaren_rl.aaren_policy.backbone import activation_fn
from aaren_rl.aaren_policy.decision import DecisionModel, greedy_one_hot
from aaren_rl.aaren_policy.scan import MASKED

__all__ = [
    "MASKED",
    "FusedAarenPolicy",
    "FusedState",
    "check_memory_horizon",
    "memory_decay",
    "trace_policy",
]


def check_memory_horizon(horizon: Any) -> int:
    """``horizon`` as an int >= 0 (0: no horizon), or ValueError saying what is allowed."""
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 0:
        raise ValueError(
            f"memory horizon must be a whole number of timesteps >= 0 (0: the whole episode), "
            f"got {horizon!r}"
        )
    return int(horizon)


def memory_decay(horizon: int) -> float:
    """Score drop per timestep of age for a memory horizon of ``horizon`` steps (0: none).

    Acting recurrently with a horizon H, token j of timestep t_j is read at timestep t with
    the score ``s_j - (t - t_j) / H`` (the action token ``a_{t-1}`` counts with timestep t,
    the step whose prediction first sees it): a soft window, weights e^-1 at H steps back,
    computed on the constant-size state by lowering its running maximum by 1/H per step
    (docs/research/horizon.md, "The fix: a memory horizon at acting time").
    """
    return 1.0 / horizon if horizon else 0.0


# MASKED (scan.py): the score of an absent token (no previous action at t = 0). Finite on
# purpose: with -inf, an empty state (m = -inf) would give exp(-inf - -inf) = NaN in that
# token's own row, and the NaN would reach the other rows' values at the next layer.


class FusedState(NamedTuple):
    """The recurrent state of ``FusedAarenPolicy``, all layers in a few flat tensors.

    Attributes:
        m: (B, L, H) running score maximum per layer and head (-inf: no token yet).
        u: (B, L, H) softmax denominator.
        w: (B, L, H, dh) softmax numerator.
        action: (B, act_dim) the last action, not yet fed to the model (deferred token).
        action_t: (B,) int64 timestep of that action; -1 when there is none.
    """

    m: torch.Tensor
    u: torch.Tensor
    w: torch.Tensor
    action: torch.Tensor
    action_t: torch.Tensor

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self)


class FusedAarenPolicy(nn.Module):
    """Inference-only snapshot of an Aaren ``DecisionModel`` with a one-call environment step.

    The weights are *copied* (as buffers) at construction: rebuild it after the model's
    weights change (``DecisionAgent`` does so automatically).

    Args:
        model: a ``DecisionModel`` whose backbone is ``"aaren"``.
        memory_horizon: H > 0 acts with a memory horizon of H timesteps: at each call the
            carried state ages by one timestep (every earlier token's score drops by 1/H, its
            weight by e^(-1/H)), so a token H steps old weighs e^-1 of a new one. 0: exact
            attention over the whole episode. See ``memory_decay``.

    Example:
        >>> from aaren_rl.aaren_policy import BackboneConfig, DecisionModel, DecisionModelConfig
        >>> model = DecisionModel(DecisionModelConfig(11, 3, net=BackboneConfig(dim=32)))
        >>> policy = FusedAarenPolicy(model)
        >>> state = policy.init_state(2)
        >>> action, state = policy(torch.zeros(2, 11), torch.ones(2, 1), torch.zeros(2,
        ...     dtype=torch.long), state)
        >>> action.shape, state.w.shape
        (torch.Size([2, 3]), torch.Size([2, 3, 1, 32]))
    """

    def __init__(self, model: DecisionModel, memory_horizon: int = 0) -> None:
        super().__init__()
        cfg = model.config
        self.memory_horizon = check_memory_horizon(memory_horizon)
        self.decay = memory_decay(memory_horizon)
        if cfg.backbone != "aaren":
            raise ValueError(
                f"FusedAarenPolicy needs an Aaren backbone, got {cfg.backbone!r}: a Transformer's "
                "state (its KV cache) grows with t, so it has no constant-size fused step; act "
                "with DecisionAgent (window or KV-cache mode) instead"
            )
        net = cfg.net
        self.obs_dim, self.act_dim = cfg.obs_dim, cfg.act_dim
        self.discrete = cfg.discrete  # one-hot argmax actions (sampling: the unfused path)
        self.dim, self.num_layers, self.num_heads = net.dim, net.num_layers, net.num_heads
        self.head_dim = net.dim // net.num_heads
        self.max_timestep = cfg.max_timestep
        self.eps = model.embed_ln.eps
        d, a_dim, o_dim = net.dim, cfg.act_dim, cfg.obs_dim
        p = next(model.parameters())
        self.activation = activation_fn(net.activation)
        self.state_mlp = cfg.state_encoder == "mlp"
        # An mlp state encoder: its first layer (and ReLU) runs on the observation, its
        # second layer takes the linear encoder's place in the block-diagonal embedding.
        state_in = cfg.state_encoder_hidden if self.state_mlp else o_dim
        state_out = model.embed_state[-1] if self.state_mlp else model.embed_state

        def keep(name: str, t: torch.Tensor) -> None:
            self.register_buffer(name, t.detach().clone().contiguous())

        with torch.no_grad():
            # Embeddings as one block-diagonal linear map: [a | R | s] (B, A+1+O) -> (B, 3, d).
            emb_w = torch.zeros(3 * d, a_dim + 1 + state_in, dtype=p.dtype, device=p.device)
            emb_w[:d, :a_dim] = model.embed_action.weight
            emb_w[d : 2 * d, a_dim : a_dim + 1] = model.embed_return.weight
            emb_w[2 * d :, a_dim + 1 :] = state_out.weight
            if model.embed_state_return is not None:  # R_t enters the state token too
                emb_w[2 * d :, a_dim : a_dim + 1] = model.embed_state_return.weight
            emb_b = torch.cat([model.embed_action.bias, model.embed_return.bias, state_out.bias])
            keep("emb_w", emb_w)
            keep("emb_b", emb_b)
            if self.state_mlp:
                keep("state_fc_w", model.embed_state[0].weight)
                keep("state_fc_b", model.embed_state[0].bias)
            keep("time_emb", model.embed_timestep.weight)
            keep("emb_ln_w", model.embed_ln.weight)
            keep("emb_ln_b", model.embed_ln.bias)
            self.layer_eps: list[float] = []
            for i, block in enumerate(model.backbone.blocks):
                mixer = block.mixer
                assert isinstance(mixer, Aaren)
                sw, sb = mixer.score_projection()  # (H, d), (H,)
                if sb is None:
                    sb = torch.zeros(self.num_heads, dtype=p.dtype, device=p.device)
                vb = mixer.v_proj.bias
                if vb is None:
                    vb = torch.zeros(d, dtype=p.dtype, device=p.device)
                ob = mixer.out_proj.bias
                keep(f"l{i}_ln1_w", block.ln1.weight)
                keep(f"l{i}_ln1_b", block.ln1.bias)
                keep(f"l{i}_sv_w", torch.cat([sw, mixer.v_proj.weight]))  # (H + d, d)
                keep(f"l{i}_sv_b", torch.cat([sb, vb]))
                keep(f"l{i}_out_w", mixer.out_proj.weight)
                keep(f"l{i}_out_b", ob if ob is not None else torch.zeros_like(vb))
                keep(f"l{i}_ln2_w", block.ln2.weight)
                keep(f"l{i}_ln2_b", block.ln2.bias)
                keep(f"l{i}_fc1_w", block.mlp[0].weight)
                keep(f"l{i}_fc1_b", block.mlp[0].bias)
                keep(f"l{i}_fc2_w", block.mlp[2].weight)
                keep(f"l{i}_fc2_b", block.mlp[2].bias)
                lam = mixer.recency_slope()
                if lam is not None:  # recency: token k of [a, R, s] + lambda k, state - lambda
                    keep(f"l{i}_rec", lam.view(1, -1, 1, 1))
                self.layer_eps.append(block.ln1.eps)
            keep("lnf_w", model.backbone.ln_f.weight)
            keep("lnf_b", model.backbone.ln_f.bias)
            keep("head_w", model.action_head[0].weight)
            keep("head_b", model.action_head[0].bias)
            # Causal mask of the 3 new tokens: row k (prefix) sees columns i <= k.
            tri = torch.ones(3, 3, dtype=torch.bool, device=p.device).tril()
            mask = torch.zeros(3, 3, dtype=p.dtype, device=p.device)
            keep("causal_bias", mask.masked_fill(~tri, -math.inf))  # (k, i)
            keep(
                "absent_bias",
                torch.tensor([MASKED, 0.0, 0.0], dtype=p.dtype, device=p.device).view(1, 1, 3),
            )
        self.lnf_eps = model.backbone.ln_f.eps
        self.recency = hasattr(self, "l0_rec")
        if self.recency:
            keep("token_pos", torch.arange(3, dtype=p.dtype, device=p.device).view(1, 1, 3))
        self._params: list[tuple[torch.Tensor, ...]] | None = None
        self.eval()

    _LAYER_KEYS = (
        "ln1_w",
        "ln1_b",
        "sv_w",
        "sv_b",
        "out_w",
        "out_b",
        "ln2_w",
        "ln2_b",
        "fc1_w",
        "fc1_b",
        "fc2_w",
        "fc2_b",
    )

    def _layer_params(self) -> list[tuple[torch.Tensor, ...]]:
        # Looked up once: 12 getattr calls per layer cost ~10 us per step in eager mode.
        if self._params is None:
            self._params = [
                tuple(getattr(self, f"l{i}_{k}") for k in self._LAYER_KEYS)
                for i in range(self.num_layers)
            ]
        return self._params

    def _apply(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._params = None  # .to() / .double() replace the buffers
        return super()._apply(fn, *args, **kwargs)

    # ---- state --------------------------------------------------------------------------------

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> FusedState:
        """The state of ``batch_size`` fresh episodes."""
        dev = self.emb_w.device if device is None else device
        dt = self.emb_w.dtype
        b, n, h = batch_size, self.num_layers, self.num_heads
        return FusedState(
            torch.full((b, n, h), -math.inf, dtype=dt, device=dev),
            torch.zeros(b, n, h, dtype=dt, device=dev),
            torch.zeros(b, n, h, self.head_dim, dtype=dt, device=dev),
            torch.zeros(b, self.act_dim, dtype=dt, device=dev),
            torch.full((b,), -1, dtype=torch.long, device=dev),
        )

    def reset_state(self, state: FusedState, done: torch.Tensor) -> FusedState:
        """Restart the rows of ``state`` where ``done`` (B,) bool is True."""
        fresh = self.init_state(done.shape[0], done.device)
        return FusedState(
            *(
                torch.where(done.view(-1, *([1] * (s.dim() - 1))), f, s)
                for s, f in zip(state, fresh)
            )
        )

    # ---- the step -------------------------------------------------------------------------------

    def _attend(
        self, s: torch.Tensor, v: torch.Tensor, m: torch.Tensor, u: torch.Tensor, w: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Exact causal softmax of 3 new tokens after a carried state, heads first.

        Args:
            s: (B, H, 3) scores; v: (B, H, 3, dh) values; m, u: (B, H, 1, 1); w: (B, H, 1, dh).

        Returns:
            ``(o, m3, u3, w3)``: o (B, H, 3, dh) the output after each prefix k; the state
            after all three tokens, shaped like ``m, u, w``.
        """
        s_ki = s.unsqueeze(-2) + self.causal_bias  # (B, H, k, i), -inf where i > k
        big_m = torch.maximum(s_ki.amax(-1, keepdim=True), m)  # (B, H, 3, 1): M_k
        p = torch.exp(s_ki - big_m)  # e^{s_i - M_k}, exactly 0 where i > k
        f = torch.exp(m - big_m)  # (B, H, 3, 1) e^{m - M_k}; 0 for an empty state (m = -inf)
        u_k = u * f + p.sum(-1, keepdim=True)  # (B, H, 3, 1)
        w_k = w * f + p @ v  # (B, H, 3, dh)
        return w_k / u_k, big_m[:, :, 2:], u_k[:, :, 2:], w_k[:, :, 2:]

    def forward(
        self,
        observation: torch.Tensor,
        returns_to_go: torch.Tensor,
        timestep: torch.Tensor,
        state: FusedState,
    ) -> tuple[torch.Tensor, FusedState]:
        """One environment step: feed ``a_{t-1}`` (if any), ``R_t``, ``s_t``; return ``a_t``.

        The head applied to :meth:`features`; the action becomes the deferred token.

        Args:
            observation: (B, obs_dim) normalised observation ``s_t``.
            returns_to_go: (B, 1) scaled return-to-go ``R_t``.
            timestep: (B,) int64 ``t``.
            state: from ``init_state`` / ``reset_state`` or the previous call.

        Returns:
            ``(action, state)``: action (B, act_dim) in [-1, 1], the same as
            ``DecisionModel.act``; the state holds it as the deferred action token.
        """
        y, state = self.features(observation, returns_to_go, timestep, state)
        z = F.linear(y, self.head_w, self.head_b)
        action = greedy_one_hot(z) if self.discrete else torch.tanh(z)
        return action, self.with_action(state, action, timestep)

    @staticmethod
    def with_action(state: FusedState, action: torch.Tensor, timestep: torch.Tensor) -> FusedState:
        """``state`` with ``action`` (B, act_dim) taken at ``timestep`` (B,) as the deferred
        action token (what :meth:`forward` does with the action it picks)."""
        # timestep is cloned: callers may update their timestep array in place.
        return state._replace(action=action, action_t=timestep.clone())

    def features(
        self,
        observation: torch.Tensor,
        returns_to_go: torch.Tensor,
        timestep: torch.Tensor,
        state: FusedState,
    ) -> tuple[torch.Tensor, FusedState]:
        """:meth:`forward` without the head: ``(y, state)``, y (B, dim) the final LayerNorm's
        output at ``s_t``; the state's deferred action is still ``a_{t-1}``: set the action
        taken with :meth:`with_action` (a stochastic policy samples it from ``y``)."""
        m_all, u_all, w_all, prev_action, prev_t = state
        if self.decay:  # the tokens up to s_{t-1} age one timestep (a_{t-1} counts with t)
            m_all = m_all - self.decay
        # -1 for the batch axis (not B): an exported graph then needs no Shape arithmetic.
        d, h, dh = self.dim, self.num_heads, self.head_dim
        tmax = self.max_timestep - 1
        # Token embeddings [a_{t-1}, R_t, s_t] (B, 3, d), plus their timestep embeddings.
        if self.state_mlp:
            observation = F.relu(F.linear(observation, self.state_fc_w, self.state_fc_b))
        z = torch.cat([prev_action, returns_to_go, observation], dim=1)
        times = torch.stack([prev_t, timestep, timestep], dim=1).clamp(0, tmax)  # (B, 3)
        x = F.linear(z, self.emb_w, self.emb_b).view(-1, 3, d) + F.embedding(times, self.time_emb)
        x = F.layer_norm(x, (d,), self.emb_ln_w, self.emb_ln_b, self.eps)
        # No previous action: that token's score is MASKED in every layer (weight exactly 0).
        score_bias = (prev_t < 0).view(-1, 1, 1) * self.absent_bias  # (B, 1, 3): a_{t-1}
        # Per-layer states, heads first: (B, H, 1, 1), (B, H, 1, 1), (B, H, 1, dh). split()
        # keeps the layer axis (one Split node in ONNX, no Squeeze/Unsqueeze).
        m_in = m_all.transpose(1, 2).unsqueeze(-1).split(1, dim=2)
        u_in = u_all.transpose(1, 2).unsqueeze(-1).split(1, dim=2)
        w_in = w_all.transpose(1, 2).split(1, dim=2)
        ms, us, ws = [], [], []
        last = self.num_layers - 1
        for i, (
            ln1_w,
            ln1_b,
            sv_w,
            sv_b,
            out_w,
            out_b,
            ln2_w,
            ln2_b,
            fc1_w,
            fc1_b,
            fc2_w,
            fc2_b,
        ) in enumerate(self._layer_params()):
            eps = self.layer_eps[i]
            sv = F.linear(F.layer_norm(x, (d,), ln1_w, ln1_b, eps), sv_w, sv_b)  # (B, 3, H + d)
            s = sv[..., :h].transpose(1, 2) + score_bias  # (B, H, 3)
            v = sv[..., h:].reshape(-1, 3, h, dh).transpose(1, 2)  # (B, H, 3, dh)
            m_prev = m_in[i]
            if self.recency:  # Aaren.forward's bias over [a, R, s] after the state
                rec = getattr(self, f"l{i}_rec")  # (1, H, 1, 1)
                s, m_prev = s + rec.squeeze(-1) * self.token_pos, m_prev - rec
            o, m_i, u_i, w_i = self._attend(s, v, m_prev, u_in[i], w_in[i])
            if self.recency:
                m_i = m_i - 2 * rec  # the state as seen from s_t, its last token
            ms.append(m_i)
            us.append(u_i)
            ws.append(w_i)
            if i == last:  # only the state token's output is read from the last layer
                x, o = x[:, 2], o[:, :, 2].reshape(-1, d)
            else:
                o = o.transpose(1, 2).reshape(-1, 3, d)
            x = x + F.linear(o, out_w, out_b)
            hdn = self.activation(F.linear(F.layer_norm(x, (d,), ln2_w, ln2_b, eps), fc1_w, fc1_b))
            x = x + F.linear(hdn, fc2_w, fc2_b)
        y = F.layer_norm(x, (d,), self.lnf_w, self.lnf_b, self.lnf_eps)
        new_state = FusedState(
            torch.cat(ms, dim=2).squeeze(-1).transpose(1, 2),  # (B, L, H)
            torch.cat(us, dim=2).squeeze(-1).transpose(1, 2),
            torch.cat(ws, dim=2).transpose(1, 2),  # (B, L, H, dh)
            prev_action,
            prev_t,
        )
        return y, new_state


class _FlatStep(nn.Module):
    """``FusedAarenPolicy.forward`` on flat tensors (for tracing: no NamedTuple in or out)."""

    def __init__(self, policy: FusedAarenPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs, rtg, t, m, u, w, action, action_t):  # type: ignore[no-untyped-def]
        a, st = self.policy(obs, rtg, t, FusedState(m, u, w, action, action_t))
        return (a, *st)


def trace_policy(policy: FusedAarenPolicy, batch_size: int = 1) -> torch.jit.ScriptModule:
    """TorchScript trace of the step, called ``traced(obs, rtg, t, *state) -> (action, *state)``.

    The trace is specialised to ``batch_size`` (shapes are baked in by tracing).
    """
    st = policy.init_state(batch_size)
    obs = torch.zeros(batch_size, policy.obs_dim, dtype=st.w.dtype)
    rtg = torch.zeros(batch_size, 1, dtype=st.w.dtype)
    t = torch.zeros(batch_size, dtype=torch.long)
    with torch.no_grad():
        traced = torch.jit.trace(_FlatStep(policy).eval(), (obs, rtg, t, *st), check_trace=False)
    return torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
