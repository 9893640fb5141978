"""``aaren-export``: one ONNX graph per environment step of an Aaren decision agent.

The graph does everything ``DecisionAgent.predict`` does in recurrent mode, so a runtime only
feeds observations and rewards and carries the state tensors it gets back:

    inputs                                     outputs
    obs          (B, obs_dim) float32 raw      action         (B, act_dim) float32
    prev_reward  (B,) float64                  rtg_next       (B,) float64
    rtg          (B,) float64  } state         timestep_next  (B,) int64
    timestep     (B,) int64    }               attn_next      (B, L, H, 1 + dh) float32
    prev_action  (B, act_dim)  }   (its next value is ``action``)
    attn         (B, L, H, 1 + dh) float32

Inside: ``start = timestep < 0``; ``rtg' = rtg if start else rtg - prev_reward``;
``t = timestep + 1``; then the fused step (tokens ``a_{t-1}, R_t, s_t``) of ``DeployStep``,
with the observation normalisation and the return scale folded into its embedding weights.
``attn`` holds, per layer and head, the attention state ``[c, o]`` with ``c = m + log u`` and
``o = w / u`` (the ``(m, u, w)`` of ``FusedAarenPolicy`` in normalised form). An episode
starts when the runtime passes the *initial rows*: rtg = target return, timestep = -1,
prev_action = 0, attn = 0 (where timestep < 0 the graph ignores prev_reward, prev_action and
attn). The batch axis is dynamic. The contract, the initial values and the agent's metadata
(env id, sizes, target return, package version) are written into the file's
``metadata_props``; ``aaren_rl.agents.onnx_agent`` reads them, so the .onnx file is all a deployment
needs.

A Transformer checkpoint is refused: its state is a KV cache that grows by three slots per
environment step, so no constant-shape step graph exists. (``aaren-bench act`` exports
Transformer window and KV-cache graphs for comparison only: ``aaren_rl.bench.transformer_onnx``.)

Example:
    $ aaren-export --checkpoint runs/hopper/checkpoint --out policy.onnx
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aaren_rl.aaren_policy import DecisionModel, __version__
from aaren_rl.aaren_policy.decision import greedy_one_hot
from aaren_rl.aaren_policy.fused import MASKED, FusedAarenPolicy
from aaren_rl.agents.checkpoint import load_model
from aaren_rl.agents.onnx_safety import ONNX_FORMAT
from aaren_rl.cli import run_cli
from aaren_rl.errors import CheckpointError, DependencyNotInstalled, ExportError
from aaren_rl.fileio import atomic_path, check_output_file, written_by

__all__ = [
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "STATE_NEXT",
    "DeployStep",
    "ExportConfig",
    "ExportError",
    "SUPPORTED_OPSETS",
    "export_onnx",
    "main",
]

INPUT_NAMES = ["obs", "prev_reward", "rtg", "timestep", "prev_action", "attn"]
OUTPUT_NAMES = ["action", "rtg_next", "timestep_next", "attn_next"]
# state input -> the output that is its value at the next call
STATE_NEXT = {
    "rtg": "rtg_next",
    "timestep": "timestep_next",
    "prev_action": "action",
    "attn": "attn_next",
}
SUPPORTED_OPSETS = range(17, 21)
"""Opsets aaren-export writes: LayerNormalization (one node) needs 17; the TorchScript
exporter of torch 2.x stops at 20."""


class DeployStep(nn.Module):
    """``DecisionAgent.predict`` (recurrent mode, Aaren) as one tensor function, for export.

    The mathematics of ``FusedAarenPolicy`` (whose folded weights it starts from), written with
    few ONNX nodes: in onnxruntime each node costs ~0.5-1 us at this size whatever it
    computes, so glue (Transpose, Slice, Reshape...) costs as much as a matmul.

    - **The attention state is a pseudo-token.** Per layer and head the carried state is
      ``(c, o) = (m + log u, w / u)``: the log-normaliser and the normalised output of the
      prefix seen so far. It weighs in exactly like one token with score ``c`` and value
      ``o``, since ``e^c = u e^m`` is the prefix's total softmax weight. So each layer's
      causal combine over ``[state, a_{t-1}, R_t, s_t]`` is one constant causal mask, one
      Softmax and one MatMul, and the new ``c`` is the logsumexp of the last row; the new
      ``o`` is that row's output (docs/design.md §3 allows any equivalent stable form). A layer's
      state ``[c, o]`` has the layout of a row of its ``[score | value]`` projection, so it
      is concatenated to the 3 new tokens as a 4th.
    - **out_proj folded into the values.** Softmax weights sum to 1, so
      ``W_o (sum_i p_i v_i) + b_o = sum_i p_i (W_o v_i + b_o)``: head ``h``'s values are
      projected by its slice of ``W_o`` (and carry ``b_o / H``) inside the score/value
      matmul, and ``o`` is stored after out_proj (d wide per head). One Gemm less per layer.
    - **Stable without -inf arithmetic.** Softmax and logsumexp subtract the row maximum and
      every row has a finite entry: absent tokens get the finite ``MASKED``, only future
      tokens ``-inf``. Where ``timestep < 0`` (an episode starts) both the state pseudo-token
      and ``a_{t-1}`` get ``MASKED`` (weight exactly 0), so a fresh ``attn`` and
      ``prev_action`` only need to be finite: zeros.
    - **Normalisation folded into weights.** ``W (obs - mean) / std + b`` is
      ``(W / std) obs + (b - W mean / std)``, and ``W (rtg / scale)`` is ``(W / scale) rtg``
      (folded in float64).
    - **Rows kept 2-D**, (B * 3 tokens, d): each linear is one Gemm, and with one head the
      head axis is a Reshape, not a Transpose.

    Args:
        model: an Aaren ``DecisionModel``.
        state_mean, state_std: (obs_dim,) observation statistics.
        return_scale: returns-to-go are divided by it before entering the model.
        memory_horizon: H timesteps of memory (``FusedAarenPolicy``): the state column's
            score drops by 1/H at every step; 0: the whole episode.
    """

    def __init__(
        self,
        model: DecisionModel,
        state_mean: np.ndarray,
        state_std: np.ndarray,
        return_scale: float,
        memory_horizon: int = 0,
    ) -> None:
        super().__init__()
        if model.config.state_encoder != "linear":
            raise ExportError(
                f"aaren-export supports the linear state encoder only, the checkpoint has "
                f"{model.config.state_encoder!r}"
            )
        fused = FusedAarenPolicy(model, memory_horizon)
        self.memory_horizon = fused.memory_horizon
        self.activation = fused.activation  # the model's feed-forward non-linearity
        self.obs_dim, self.act_dim = fused.obs_dim, fused.act_dim
        self.discrete = fused.discrete
        self.dim, self.num_layers, self.num_heads = fused.dim, fused.num_layers, fused.num_heads
        self.max_timestep = fused.max_timestep
        self.eps, self.layer_eps, self.lnf_eps = fused.eps, fused.layer_eps, fused.lnf_eps
        dtype = fused.emb_w.dtype
        h, dh, a_dim = self.num_heads, fused.head_dim, self.act_dim

        def keep(name: str, t: torch.Tensor) -> None:
            self.register_buffer(name, t.detach().to(dtype).contiguous())

        def f64(name: str) -> torch.Tensor:
            return getattr(fused, name).detach().double()

        with torch.no_grad():
            mean = torch.as_tensor(np.asarray(state_mean, dtype=np.float64))
            std = torch.as_tensor(np.asarray(state_std, dtype=np.float64))
            emb_w, emb_b = f64("emb_w").clone(), f64("emb_b")
            w_obs = emb_w[:, a_dim + 1 :]
            keep("emb_b", emb_b - w_obs @ (mean / std))
            emb_w[:, a_dim + 1 :] = w_obs / std
            emb_w[:, a_dim] /= float(return_scale)
            keep("emb_w", emb_w)
            for name in ("time_emb", "emb_ln_w", "emb_ln_b", "lnf_w", "lnf_b", "head_w", "head_b"):
                keep(name, getattr(fused, name))
            self._keys = ("ln1_w", "ln1_b", "sv_w", "sv_b", "ln2_w", "ln2_b")
            self._keys += ("fc1_w", "fc1_b", "fc2_w", "fc2_b")
            for i in range(self.num_layers):
                sv_w, sv_b = f64(f"l{i}_sv_w"), f64(f"l{i}_sv_b")  # rows [s_1..s_H | v]
                out_w, out_b = f64(f"l{i}_out_w"), f64(f"l{i}_out_b")
                rows, bias = [], []
                for j in range(h):  # head j: [s_j, W_o[:, j] v_j + b_o / H], 1 + d rows
                    vj = slice(h + j * dh, h + (j + 1) * dh)
                    ow = out_w[:, j * dh : (j + 1) * dh]  # (d, dh)
                    rows += [sv_w[j : j + 1], ow @ sv_w[vj]]
                    bias += [sv_b[j : j + 1], ow @ sv_b[vj] + out_b / h]
                keep(f"l{i}_sv_w", torch.cat(rows))  # (H (1 + d), d)
                keep(f"l{i}_sv_b", torch.cat(bias))
                for k in self._keys:
                    if not k.startswith("sv"):
                        keep(f"l{i}_{k}", getattr(fused, f"l{i}_{k}"))
            # Score bias (1, 1, prefix k, 4) over columns [state, a_{t-1}, R_t, s_t]: prefix
            # k sees columns <= k + 1; at an episode's start the first two are absent.
            run = torch.zeros(3, 4, dtype=torch.float64)
            run[0, 2:] = run[1, 3] = -math.inf
            start = run.clone()
            start[:, :2] = MASKED
            keep("bias_run", run.view(1, 1, 3, 4))
            keep("bias_start", start.view(1, 1, 3, 4))
            # Recency (Aaren.recency_slope): columns [state, a, R, s] get lambda * (-1, 0, 1,
            # 2), and the new state's c is seen from s_t: - 2 lambda.
            self.recency = fused.recency
            if self.recency:
                cols = torch.tensor([-1.0, 0.0, 1.0, 2.0], dtype=torch.float64)
                for i in range(self.num_layers):
                    lam = f64(f"l{i}_rec").view(1, h, 1, 1)
                    keep(f"l{i}_rec_bias", lam * cols)
                    keep(f"l{i}_rec_shift", 2 * lam)
            # Memory horizon: the state column (every token up to s_{t-1}) ages one step.
            self.aging = bool(fused.decay)
            if self.aging:
                age = torch.tensor([-fused.decay, 0.0, 0.0, 0.0], dtype=torch.float64)
                keep("age_bias", age.view(1, 1, 1, 4))
        # Timestep of each token: a_{t-1} at the previous t, R_t and s_t at t.
        self.register_buffer("time_offsets", torch.tensor([0, 1, 1]))
        self.eval()

    def forward(
        self,
        obs: torch.Tensor,
        prev_reward: torch.Tensor,
        rtg: torch.Tensor,
        timestep: torch.Tensor,
        prev_action: torch.Tensor,
        attn: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One environment step on raw inputs (the graph's contract, see the module doc).

        Args:
            obs: (B, obs_dim) raw observation.
            prev_reward, rtg: (B,) float64.
            timestep: (B,) int64, the previous call's ``t`` (-1: the episode starts now).
            prev_action: (B, act_dim) the previous action.
            attn: (B, L, H, 1 + d) attention state ``[c, o]`` per layer and head.

        Returns:
            ``(action, rtg_next, timestep_next, attn_next)``.
        """
        # -1 for the batch axis everywhere: the graph then needs no Shape arithmetic.
        d, h = self.dim, self.num_heads
        start = timestep < 0
        # DecisionAgent: rtg -= previous reward (float64), except at an episode's start.
        rtg_next = torch.where(start, rtg, rtg - prev_reward)
        t = timestep + 1
        # Tokens [a_{t-1}, R_t, s_t] as rows b * 3 + k of a (B * 3, d) matrix.
        z = torch.cat([prev_action, rtg_next.to(obs.dtype).unsqueeze(-1), obs], dim=1)
        times = (timestep.unsqueeze(-1) + self.time_offsets).clamp(0, self.max_timestep - 1)
        x = F.linear(z, self.emb_w, self.emb_b).view(-1, d)
        x = x + F.embedding(times.view(-1), self.time_emb)
        x = F.layer_norm(x, (d,), self.emb_ln_w, self.emb_ln_b, self.eps)
        bias = torch.where(start.view(-1, 1, 1, 1), self.bias_start, self.bias_run)  # (B,1,3,4)
        # Per-layer states, heads first: (B, H, 1, 1 + d). With one head, no Transpose.
        states = attn.split(1, dim=1) if h == 1 else attn.transpose(1, 2).split(1, dim=2)
        new_states = []
        last = self.num_layers - 1
        for i in range(self.num_layers):
            ln1_w, ln1_b, sv_w, sv_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b = (
                getattr(self, f"l{i}_{k}") for k in self._keys
            )
            eps = self.layer_eps[i]
            sv = F.linear(F.layer_norm(x, (d,), ln1_w, ln1_b, eps), sv_w, sv_b)  # (B*3, H(1+d))
            sv = sv.view(-1, 1, 3, 1 + d) if h == 1 else sv.view(-1, 3, h, 1 + d).transpose(1, 2)
            tokens = torch.cat([states[i], sv], dim=2)  # (B, H, 4, 1 + d): [state, a, R, s]
            s, v = tokens.split([1, d], dim=-1)  # (B, H, 4, 1), (B, H, 4, d)
            # The last layer only needs prefix 3 (the state token's output).
            logits = s.reshape(-1, h, 1, 4) + (bias[:, :, 2:] if i == last else bias)
            if self.recency:
                logits = logits + getattr(self, f"l{i}_rec_bias")
            if self.aging:
                logits = logits + self.age_bias
            o = torch.softmax(logits, dim=-1) @ v  # (B, H, K, d): output after each prefix
            c = torch.logsumexp(logits, dim=-1, keepdim=True)  # (B, H, K, 1)
            if self.recency:
                c = c - getattr(self, f"l{i}_rec_shift")
            new = torch.cat([c, o], dim=-1)  # (B, H, K, 1 + d)
            new_states.append(new if i == last else new[:, :, 2:])
            if i == last:
                x = x[2::3]  # the state tokens' rows: one Slice node
            x = x + (o.reshape(-1, d) if h == 1 else o.sum(1).reshape(-1, d))
            hdn = self.activation(F.linear(F.layer_norm(x, (d,), ln2_w, ln2_b, eps), fc1_w, fc1_b))
            x = x + F.linear(hdn, fc2_w, fc2_b)
        y = F.layer_norm(x, (d,), self.lnf_w, self.lnf_b, self.lnf_eps)
        z = F.linear(y, self.head_w, self.head_b)
        action = greedy_one_hot(z) if self.discrete else torch.tanh(z)  # discrete: one-hot
        if h == 1:
            attn_next = torch.cat(new_states, dim=1)
        else:
            attn_next = torch.cat(new_states, dim=2).transpose(1, 2)
        return action, rtg_next, t, attn_next


def initial_state(step: DeployStep, batch: int, target_return: float) -> dict[str, Any]:
    """The initial state rows as numpy arrays, keyed by input name."""
    n, h, d = step.num_layers, step.num_heads, step.dim
    return {
        "rtg": np.full(batch, target_return, dtype=np.float64),
        "timestep": np.full(batch, -1, dtype=np.int64),
        "prev_action": np.zeros((batch, step.act_dim), dtype=np.float32),
        "attn": np.zeros((batch, n, h, 1 + d), dtype=np.float32),
    }


@dataclass
class ExportConfig:
    """Settings of ``aaren-export``."""

    checkpoint: Path
    """Checkpoint directory written by aaren-train (model.safetensors + agent.json)."""
    out: str = "policy.onnx"
    """Where to write the ONNX file; a directory (or a path ending in '/') gets policy.onnx
    inside. An existing file is replaced only if aaren-export wrote it (or with
    --overwrite); never a file of the checkpoint, a symlink or a special file."""
    overwrite: bool = False
    """Replace an existing --out file that aaren-export did not write."""
    target_return: float | None = None
    """Return-to-go an episode starts from; default: the checkpoint's target return."""
    opset: int = 17
    """ONNX opset (17: LayerNormalization is a single node)."""
    verify: bool = True
    """Run the exported graph in onnxruntime against PyTorch for 5 steps, batch 2."""
    memory_horizon: int | None = None
    """Timesteps of memory the graph acts with (aaren-eval --memory-horizon), baked into the
    graph; 0: the whole episode. Default: the checkpoint's."""


def _metadata(
    meta: dict[str, Any], model: DecisionModel, target_return: float, memory_horizon: int
) -> dict[str, str]:
    cfg = model.config
    net = cfg.net
    state_shapes = {
        "rtg": ["B"],
        "timestep": ["B"],
        "prev_action": ["B", cfg.act_dim],
        "attn": ["B", net.num_layers, net.num_heads, 1 + net.dim],
    }
    contract = {
        "inputs": INPUT_NAMES,
        "outputs": OUTPUT_NAMES,
        "state_next": STATE_NEXT,
        "state_shapes": state_shapes,
        "initial_state": {"rtg": "target_return", "timestep": -1, "prev_action": 0.0, "attn": 0.0},
        "attn": "per layer and head [c, o]: c = m + log u (the log-normaliser), o = the "
        "head's slice of out_proj applied to w / u, plus out_proj.bias / H",
        "episode_start": "pass the initial state rows (timestep -1 and rtg = target_return "
        "suffice: prev_action, attn and prev_reward are then ignored)",
        "reward": "prev_reward is the reward the env returned for the previous action",
    }
    return {
        "aaren.format": str(ONNX_FORMAT),
        "aaren.env_id": str(meta.get("env_id") or ""),
        "aaren.obs_dim": str(cfg.obs_dim),
        "aaren.act_dim": str(cfg.act_dim),
        "aaren.target_return": repr(float(target_return)),
        "aaren.return_scale": repr(float(meta["return_scale"])),
        "aaren.memory_horizon": str(memory_horizon),
        "aaren.package_version": __version__,
        "aaren.model_config": json.dumps(cfg.to_dict()),
        "aaren.contract": json.dumps(contract),
    }


def _check_exportable(model: DecisionModel, directory: Path) -> None:
    if model.config.backbone != "aaren":
        raise ExportError(
            f"{directory} holds a {model.config.backbone!r} backbone: its recurrent state is a "
            "KV cache that grows by three slots per environment step, so it cannot be a "
            "constant-shape ONNX step graph. aaren-export supports Aaren checkpoints only (a "
            "K-step window export is not provided); act with the PyTorch agent "
            "(aaren-eval --mode window) instead."
        )


def check_config(config: ExportConfig) -> None:
    """Check the flags and the output path before any work (nothing is created).

    Raises:
        ExportError: an opset outside :data:`SUPPORTED_OPSETS`, a target return that is not
            a finite number.
        OutputPathError: ``out`` is a directory or cannot be written.
    """
    if config.opset not in SUPPORTED_OPSETS:
        raise ExportError(
            f"--opset {config.opset} is not supported: choose {SUPPORTED_OPSETS.start}.."
            f"{SUPPORTED_OPSETS.stop - 1} (17 is the default: LayerNormalization is one node "
            "from 17 on; 21 and above are not produced by the TorchScript exporter)"
        )
    if config.target_return is not None and not math.isfinite(config.target_return):
        raise ExportError(
            f"--target-return must be a finite number, got {config.target_return}; pass e.g. "
            "--target-return 3600, or leave it out to use the checkpoint's"
        )
    if config.memory_horizon is not None and config.memory_horizon < 0:
        raise ExportError(
            f"--memory-horizon must be >= 0 timesteps (0: the whole episode), got "
            f"{config.memory_horizon}"
        )
    check_output_file(
        output_path(config.out),
        "--out",
        inputs=[config.checkpoint],
        overwrite=config.overwrite,
        ours=lambda p: written_by(p, b"aaren.format"),
    )


def output_path(out: str | Path) -> Path:
    """The file ``--out`` names: ``policy.onnx`` inside a directory or a path ending in '/'."""
    if str(out).endswith(("/", os.sep)) or Path(out).expanduser().is_dir():
        return Path(out).expanduser() / "policy.onnx"
    return Path(out).expanduser()


def export_onnx(config: ExportConfig) -> Path:
    """Export a checkpoint's step graph; returns the written path.

    Raises:
        ExportError: a non-Aaren checkpoint, a bad flag (see :func:`check_config`), or onnx
            missing.
        OutputPathError: ``config.out`` cannot be written.
        CheckpointError: the checkpoint cannot be read.
    """
    check_config(config)
    try:
        import onnx  # noqa: F401  (fail early with the extra to install)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ExportError("aaren-export needs onnx: pip install 'aaren-rl[onnx]'") from e
    directory = Path(config.checkpoint)
    model, meta = load_model(directory, "cpu")
    _check_exportable(model, directory)
    target = float(meta["target_return"] if config.target_return is None else config.target_return)
    _check_scaled_target(target, float(meta["return_scale"]), config, directory)
    horizon = (
        meta.get("memory_horizon", 0) if config.memory_horizon is None else config.memory_horizon
    )
    try:
        step = DeployStep(
            model, meta["state_mean"], meta["state_std"], meta["return_scale"], horizon
        ).eval()
    except ValueError as e:  # a memory_horizon in agent.json that is not a count of steps
        raise CheckpointError(f"{directory}: {e}") from None
    example = _example_inputs(step, 2, target)
    out = output_path(config.out)
    with atomic_path(out) as tmp:  # only a complete, verified file takes the name
        _export_to(step, example, tmp, config, meta, model, target, directory)
        if config.verify:
            _verify(step, tmp, target)
    return out


def _check_scaled_target(target: float, scale: float, config: ExportConfig, where: Path) -> None:
    """A target return so far beyond the data that the graph would compute NaN: name it."""
    from aaren_rl.agents.base import MAX_SCALED_TARGET

    if abs(target / scale) > MAX_SCALED_TARGET:
        source = "--target-return" if config.target_return is not None else f"{where}/agent.json's"
        raise ExportError(
            f"{source} target return {target:g} is {target / scale:.3g} after the return scale "
            f"{scale:g}, far beyond any return-to-go the model was trained on (its actions "
            "would be NaN); pass a --target-return near the dataset's returns"
        )


def _export_to(
    step: DeployStep,
    example: dict[str, np.ndarray],
    out: Path,
    config: ExportConfig,
    meta: dict,
    model: torch.nn.Module,
    target: float,
    directory: Path,
) -> None:
    import onnx

    batch = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(
            step,
            tuple(torch.as_tensor(v) for v in example.values()),
            str(out),
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_axes={n: batch for n in INPUT_NAMES + OUTPUT_NAMES},
            opset_version=config.opset,
            dynamo=False,  # the TorchScript exporter: a plain graph, no onnxscript needed
        )
    proto = onnx.load(str(out))
    for key, value in _metadata(meta, model, target, step.memory_horizon).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"aaren-rl {__version__} step graph of {directory}"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))


def _example_inputs(step: DeployStep, batch: int, target: float) -> dict[str, np.ndarray]:
    gen = np.random.default_rng(0)
    obs_dim = step.obs_dim
    return {
        "obs": gen.standard_normal((batch, obs_dim)).astype(np.float32),
        "prev_reward": np.zeros(batch, dtype=np.float64),
        **initial_state(step, batch, target),
    }


def _verify(step: DeployStep, path: Path, target: float, steps: int = 5) -> None:
    """Run both for a few steps; raise ExportError if they disagree beyond 1e-4."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = _example_inputs(step, 2, target)
    gen = np.random.default_rng(1)
    for _ in range(steps):
        got = sess.run(OUTPUT_NAMES, feeds)
        with torch.no_grad():
            want = step(*(torch.as_tensor(v) for v in feeds.values()))
        err = max(float(np.max(np.abs(g - w.numpy()))) for g, w in zip(got, want))
        if not math.isfinite(err) or err > 1e-4:
            raise ExportError(f"{path}: onnxruntime disagrees with PyTorch by {err:.3g}")
        outs = dict(zip(OUTPUT_NAMES, got))
        feeds = {
            "obs": gen.standard_normal(feeds["obs"].shape).astype(np.float32),
            "prev_reward": gen.standard_normal(2),
            **{k: outs[v] for k, v in STATE_NEXT.items()},
        }


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``aaren-export`` (exit 2 on a user error, 1 on a failure)."""

    def body() -> None:
        import tyro

        config = tyro.cli(ExportConfig, args=argv, description=__doc__)
        try:
            out = export_onnx(config)
        except ImportError as e:
            raise DependencyNotInstalled(
                f"{e.name or e} is missing: pip install 'aaren-rl[onnx]'"
            ) from e
        print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")

    return run_cli("aaren-export", body)


if __name__ == "__main__":
    sys.exit(main())
