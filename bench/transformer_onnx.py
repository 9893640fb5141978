"""The Transformer agents exported to ONNX, for the acting benchmark only (equal engineering).

The Aaren step graph (``aaren-export``) folds normalisation into weights, fuses projections
and runs in onnxruntime with I/O binding. To measure the architecture rather than the effort,
the Transformer baselines get the same treatment here:

- ``transformer-window-onnx`` (:class:`WindowGraph`, :class:`WindowOnnxAgent`): DT's way of
  acting, the last K steps re-run per action, as one graph. The agent keeps DecisionAgent's
  right-padded window buffers (raw observations and returns-to-go: the graph normalises them
  through folded weights) bound once to the session, and reads the action at each env's
  current position.
- ``transformer-kv-onnx`` (:class:`KVStepGraph`, :class:`KVOnnxAgent`): one graph per
  environment step, with the same deferred action token as the Aaren step (one call feeds
  ``a_{t-1}, R_t, s_t``), q/k/v fused into one matmul per layer, and a KV cache that grows by
  three slots per step: ``(L, B, H, T, dh)`` in, ``(L, B, H, T + 3, dh)`` out. The cache
  outputs stay onnxruntime values (I/O binding) and are fed back without a numpy copy.

Both agents have ``DecisionAgent``'s step API and are checked against it
(:func:`max_action_error`). Neither graph is a product: ``aaren-export`` ships Aaren only.
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aaren_rl.aaren_policy import DecisionModel
from aaren_rl.aaren_policy.fused import MASKED
from aaren_rl.agents.onnx_agent import SessionPerBatch, ort_value
from aaren_rl.agents.step_inputs import StepInputs
from aaren_rl.errors import ExportError
from aaren_rl.fileio import atomic_path

__all__ = [
    "KVOnnxAgent",
    "KVStepGraph",
    "WindowGraph",
    "WindowOnnxAgent",
    "export_kv",
    "export_window",
    "fold_normalisation",
    "max_action_error",
]


def fold_normalisation(
    model: DecisionModel, state_mean: np.ndarray, state_std: np.ndarray, return_scale: float
) -> DecisionModel:
    """A copy of ``model`` that takes raw observations and unscaled returns-to-go.

    ``W (obs - mean) / std + b = (W / std) obs + (b - W mean / std)`` and
    ``W (rtg / scale) = (W / scale) rtg``, folded in float64 as ``aaren-export`` does.
    """
    folded = copy.deepcopy(model).eval()
    with torch.no_grad():
        mean = torch.as_tensor(np.asarray(state_mean, dtype=np.float64))
        std = torch.as_tensor(np.asarray(state_std, dtype=np.float64))
        emb = folded.embed_state
        w, b = emb.weight.double(), emb.bias.double()
        emb.weight.copy_(w / std)
        emb.bias.copy_(b - w @ (mean / std))
        folded.embed_return.weight.copy_(folded.embed_return.weight.double() / return_scale)
    return folded


# ---- window: the last K steps re-run per action ---------------------------------------------


class WindowGraph(nn.Module):
    """``DecisionModel.forward`` over a K-step window on raw inputs; the action at ``pos``.

    Inputs: ``rtg`` (B, K, 1) unscaled, ``obs`` (B, K, obs_dim) raw, ``act`` (B, K, act_dim),
    ``timesteps`` (B, K) int64, ``pos`` (B,) int64 (each env's current step in its window).
    Output: ``action`` (B, act_dim).
    """

    def __init__(self, folded: DecisionModel) -> None:
        super().__init__()
        self.model = folded

    def forward(
        self,
        rtg: torch.Tensor,
        obs: torch.Tensor,
        act: torch.Tensor,
        timesteps: torch.Tensor,
        pos: torch.Tensor,
    ) -> torch.Tensor:
        preds, _ = self.model(rtg, obs, act, timesteps)  # (B, K, act_dim)
        index = pos.view(-1, 1, 1).expand(-1, 1, preds.shape[-1])
        return preds.gather(1, index).squeeze(1)


def _onnx_export(module: nn.Module, args: tuple, path: Path, names: tuple, axes: dict) -> Path:
    inputs, outputs = names
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about the models' shape checks: they hold for any batch.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            args,
            str(tmp),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    return path


def export_window(folded: DecisionModel, context_length: int, path: str | Path) -> Path:
    """Write the window graph of a folded Transformer (or Aaren) model to ``path``."""
    cfg, k = folded.config, context_length
    args = (
        torch.zeros(2, k, 1),
        torch.zeros(2, k, cfg.obs_dim),
        torch.zeros(2, k, cfg.act_dim),
        torch.zeros(2, k, dtype=torch.long),
        torch.zeros(2, dtype=torch.long),
    )
    names = (["rtg", "obs", "act", "timesteps", "pos"], ["action"])
    axes = {n: {0: "batch"} for n in names[0] + names[1]}
    return _onnx_export(WindowGraph(folded), args, Path(path), names, axes)


class _OnnxBase(StepInputs):
    """Shared by the two agents: the session, sizes, return-to-go and timestep bookkeeping."""

    def __init__(
        self, path: Path, obs_dim: int, act_dim: int, target_return: float, threads: int
    ) -> None:
        self.path = Path(path)
        # one session per batch size, as OnnxAgent (onnxruntime's memory plan follows the
        # shapes of a session's first run); the KV graph's shapes change every call anyway
        # graphs this benchmark exported itself (not aaren-export's: other operators, e.g.
        # Shape), so only their external data is checked, not their operators
        self.sessions = SessionPerBatch(self.path, threads, vet_graph=False)
        self.session = self.sessions.first
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.target_return = float(target_return)
        self.num_envs = 0
        self.params = 0

    @property
    def model_bytes(self) -> int:
        return self.path.stat().st_size

    def _reset_counters(self, num_envs: int) -> None:
        """Fresh return-to-go and timestep rows for ``num_envs`` environments."""
        self.num_envs = num_envs
        self.rtg = np.full(num_envs, self.target_return, dtype=np.float64)
        self.timestep = np.zeros(num_envs, dtype=np.int64)
        self._started = np.zeros(num_envs, dtype=bool)

    def predict(
        self,
        obs: np.ndarray,
        reward: np.ndarray | None = None,
        episode_start: np.ndarray | None = None,
    ) -> np.ndarray:
        """One action per environment (DecisionAgent.predict's contract)."""
        obs, reward, start = self._check_inputs(obs, reward, episode_start)
        # DecisionAgent's bookkeeping: rtg -= reward and t += 1, except where an episode starts
        cont = ~start
        self.rtg[cont] -= reward[cont]
        self.timestep[cont] += 1
        self.rtg[start] = self.target_return
        self.timestep[start] = 0
        self._started[:] = True
        return self._act(obs, start)

    def _act(self, obs: np.ndarray, start: np.ndarray) -> np.ndarray:
        """The graph's action for checked ``obs`` (N, obs_dim); ``start`` (N,) bool."""
        raise NotImplementedError


class WindowOnnxAgent(_OnnxBase):
    """Act with :class:`WindowGraph` in onnxruntime (DecisionAgent's window mode)."""

    mode = "window"

    def __init__(
        self,
        path: str | Path,
        obs_dim: int,
        act_dim: int,
        target_return: float,
        context_length: int = 20,
        threads: int = 1,
    ) -> None:
        super().__init__(Path(path), obs_dim, act_dim, target_return, threads)
        self.context_length = context_length

    def reset(self, num_envs: int = 1) -> None:
        n, k = num_envs, self.context_length
        self._reset_counters(n)
        self.session = self.sessions.get(n)
        self._len = np.zeros(n, dtype=np.int64)
        self._bufs = {
            "rtg": np.zeros((n, k, 1), dtype=np.float32),
            "obs": np.zeros((n, k, self.obs_dim), dtype=np.float32),
            "act": np.zeros((n, k, self.act_dim), dtype=np.float32),
            "timesteps": np.zeros((n, k), dtype=np.int64),
        }
        self._pos = np.zeros(n, dtype=np.int64)
        self._action = np.zeros((n, self.act_dim), dtype=np.float32)
        # I/O binding to the window buffers themselves: updated in place, bound once.
        self._values = [ort_value(a) for a in (*self._bufs.values(), self._pos, self._action)]
        self._binding = self.session.io_binding()
        for name, value in zip([*self._bufs, "pos"], self._values):
            self._binding.bind_ortvalue_input(name, value)
        self._binding.bind_ortvalue_output("action", self._values[-1])

    def state_nbytes(self) -> int:
        return sum(b.nbytes for b in self._bufs.values())

    def _act(self, obs: np.ndarray, start: np.ndarray) -> np.ndarray:
        k, bufs, rows = self.context_length, self._bufs, np.arange(self.num_envs)
        self._len[start] = 0
        full = self._len >= k
        if full.any():  # drop the oldest step of full windows (in place: buffers stay bound)
            for buf in bufs.values():
                buf[full] = np.roll(buf[full], -1, axis=1)
            self._len[full] = k - 1
        pos = self._len
        bufs["rtg"][rows, pos, 0] = self.rtg
        bufs["obs"][rows, pos] = obs
        bufs["act"][rows, pos] = 0.0
        bufs["timesteps"][rows, pos] = self.timestep
        self._pos[:] = pos
        self.session.run_with_iobinding(self._binding)
        bufs["act"][rows, pos] = self._action
        self._len += 1
        return self._action.copy()


# ---- KV cache: one step graph, the cache grows by three slots per step ----------------------


class KVStepGraph(nn.Module):
    """One environment step of a folded Transformer ``DecisionModel`` with a KV cache.

    Tokens ``[a_{t-1}, R_t, s_t]`` (the action token deferred to the next call, as in the
    Aaren step) attend to the cache and causally to each other; the action is read at
    ``s_t``. Where ``start`` the ``a_{t-1}`` column gets the finite ``MASKED`` score (weight
    exactly 0, now and in later steps through ``bias``); the caller masks a restarting row's
    older slots in ``past_bias``.

    Inputs: ``obs`` (B, obs_dim) raw, ``rtg`` (B, 1) unscaled, ``prev_action`` (B, act_dim),
    ``timestep`` (B,) int64 (t of this step), ``start`` (B,) bool, ``past_k``/``past_v``
    (L, B, H, T, dh), ``past_bias`` (B, T) float32 (0: attend, ``MASKED``: ignore).
    Outputs: ``action`` (B, act_dim), ``k_next``/``v_next`` (L, B, H, T + 3, dh),
    ``bias_next`` (B, T + 3).
    """

    def __init__(self, folded: DecisionModel) -> None:
        super().__init__()
        if folded.config.backbone != "transformer":
            raise ExportError("KVStepGraph needs a Transformer DecisionModel")
        self.model = folded
        net = folded.config.net
        self.num_heads, self.head_dim = net.num_heads, net.dim // net.num_heads
        with torch.no_grad():  # q, k, v as one (3d, d) matmul per layer
            for i, blk in enumerate(folded.backbone.blocks):
                att = blk.mixer
                w = torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight])
                b = torch.cat([att.q_proj.bias, att.k_proj.bias, att.v_proj.bias])
                self.register_buffer(f"qkv_w{i}", w.clone())
                self.register_buffer(f"qkv_b{i}", b.clone())
        causal = torch.zeros(3, 3)
        causal[0, 1:] = causal[1, 2] = -math.inf
        self.register_buffer("causal", causal)
        self.register_buffer("start_cols", torch.tensor([MASKED, 0.0, 0.0]))

    def forward(
        self,
        obs: torch.Tensor,
        rtg: torch.Tensor,
        prev_action: torch.Tensor,
        timestep: torch.Tensor,
        start: torch.Tensor,
        past_k: torch.Tensor,
        past_v: torch.Tensor,
        past_bias: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        m, h, dh = self.model, self.num_heads, self.head_dim
        t_now = m._time(timestep)
        a = m.embed_action(prev_action) + m._time(timestep - 1)
        x = torch.stack([a, m.embed_return(rtg) + t_now, m.embed_state(obs) + t_now], dim=1)
        x = m.embed_ln(x)  # (B, 3, d)
        new_cols = torch.where(
            start.unsqueeze(-1), self.start_cols, torch.zeros_like(self.start_cols)
        )
        bias_next = torch.cat([past_bias, new_cols], dim=1)  # (B, T + 3)
        scores_bias = torch.cat(
            [past_bias.unsqueeze(1).expand(-1, 3, -1), new_cols.unsqueeze(1) + self.causal], dim=2
        ).unsqueeze(1)  # (B, 1, 3, T + 3)
        ks, vs = [], []
        for i, blk in enumerate(m.backbone.blocks):
            qkv = nn.functional.linear(
                blk.ln1(x), getattr(self, f"qkv_w{i}"), getattr(self, f"qkv_b{i}")
            )
            q, k, v = qkv.view(-1, 3, 3, h, dh).permute(2, 0, 3, 1, 4)  # 3 x (B, H, 3, dh)
            k = torch.cat([past_k[i], k], dim=2)
            v = torch.cat([past_v[i], v], dim=2)
            ks.append(k)
            vs.append(v)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + scores_bias, dim=-1)
            o = (att @ v).transpose(1, 2).reshape(x.shape)  # (B, 3, d)
            x = x + blk.mixer.out_proj(o)
            x = x + blk.mlp(blk.ln2(x))
        action = m.action_head(m.backbone.ln_f(x[:, 2]))
        return action, torch.stack(ks), torch.stack(vs), bias_next


KV_INPUTS = ["obs", "rtg", "prev_action", "timestep", "start", "past_k", "past_v", "past_bias"]
KV_OUTPUTS = ["action", "k_next", "v_next", "bias_next"]


def export_kv(folded: DecisionModel, path: str | Path) -> Path:
    """Write the KV-cache step graph of a folded Transformer model to ``path``."""
    graph = KVStepGraph(folded)
    cfg, net = folded.config, folded.config.net
    b, t = 2, 3
    kv = torch.zeros(net.num_layers, b, graph.num_heads, t, graph.head_dim)
    args = (
        torch.zeros(b, cfg.obs_dim),
        torch.zeros(b, 1),
        torch.zeros(b, cfg.act_dim),
        torch.ones(b, dtype=torch.long),
        torch.zeros(b, dtype=torch.bool),
        kv,
        kv.clone(),
        torch.zeros(b, t),
    )
    axes: dict[str, dict[int, str]] = {n: {0: "batch"} for n in KV_INPUTS + KV_OUTPUTS}
    for n in ("past_k", "past_v", "k_next", "v_next"):
        axes[n] = {1: "batch", 3: "slots" if n.startswith("past") else "slots_next"}
    axes["past_bias"] = {0: "batch", 1: "slots"}
    axes["bias_next"] = {0: "batch", 1: "slots_next"}
    return _onnx_export(graph, args, Path(path), (KV_INPUTS, KV_OUTPUTS), axes)


class KVOnnxAgent(_OnnxBase):
    """Act with :class:`KVStepGraph` in onnxruntime (DecisionAgent's recurrent Transformer).

    The cache lives in onnxruntime values between calls (no numpy round trip); a restarting
    row's old slots are masked, and the cache is emptied when every row restarts together.
    """

    mode = "recurrent"

    def __init__(
        self,
        path: str | Path,
        num_layers: int,
        num_heads: int,
        head_dim: int,
        obs_dim: int,
        act_dim: int,
        target_return: float,
        threads: int = 1,
    ) -> None:
        super().__init__(Path(path), obs_dim, act_dim, target_return, threads)
        self._cache_shape = (num_layers, num_heads, head_dim)

    def _empty(self, n: int) -> None:
        layers, heads, dh = self._cache_shape
        zeros = np.zeros((layers, n, heads, 0, dh), dtype=np.float32)
        self._k, self._v = ort_value(zeros), ort_value(zeros.copy())
        self._bias = np.zeros((n, 0), dtype=np.float32)

    def reset(self, num_envs: int = 1) -> None:
        self._reset_counters(num_envs)
        self._prev_action = np.zeros((num_envs, self.act_dim), dtype=np.float32)
        self._empty(num_envs)

    def state_nbytes(self) -> int:
        slots = self._bias.shape[1]
        layers, heads, dh = self._cache_shape
        cache = 2 * layers * self.num_envs * heads * slots * dh * 4
        return cache + self._bias.nbytes + self._prev_action.nbytes

    def _act(self, obs: np.ndarray, start: np.ndarray) -> np.ndarray:
        if start.all():
            self._empty(self.num_envs)
        elif start.any():
            self._bias[start] = MASKED
        binding = self.session.io_binding()
        feeds = {
            "obs": obs,
            "rtg": self.rtg.astype(np.float32).reshape(-1, 1),
            "prev_action": self._prev_action,
            "timestep": self.timestep,
            "start": start,
            "past_bias": self._bias,
        }
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        binding.bind_ortvalue_input("past_k", self._k)
        binding.bind_ortvalue_input("past_v", self._v)
        for name in KV_OUTPUTS:
            binding.bind_output(name)
        self.session.run_with_iobinding(binding)
        action, self._k, self._v, bias = binding.get_outputs()
        self._bias = bias.numpy()
        self._prev_action = action.numpy()
        return self._prev_action.copy()


def max_action_error(
    reference: Any, candidate: Any, obs_dim: int, num_envs: int = 2, steps: int = 30, seed: int = 0
) -> float:
    """Largest |action difference| of two agents fed the same random episode stream.

    Rows restart at different steps (row 0 at 0 and 17, the others at 0 only), so per-row
    resets are compared too.
    """
    gen = np.random.default_rng(seed)
    reference.reset(num_envs)
    candidate.reset(num_envs)
    worst = 0.0
    for i in range(steps):
        obs = gen.standard_normal((num_envs, obs_dim)).astype(np.float32)
        reward = gen.standard_normal(num_envs)
        start = np.zeros(num_envs, dtype=bool)
        start[0] = i in (0, 17)
        start[1:] = i == 0
        a = reference.predict(obs, reward, start)
        b = candidate.predict(obs, reward, start)
        err = float(np.abs(a - b).max())
        worst = max(worst, err if np.isfinite(err) else math.inf)  # NaN actions: infinitely off
    return worst
