"""``aaren-export``: one ONNX graph per environment step of an Aaren decision agent.

The graph does everything ``DecisionAgent.predict`` does in recurrent mode, so a runtime only
feeds observations and rewards and carries the state tensors it gets back:

    inputs                                     outputs
    obs          (B, obs_dim) float32 raw      action         (B, act_dim) float32
    prev_reward  (B,) float64                  rtg_next       (B,) float64
    rtg          (B,) float64  } state         timestep_next  (B,) int64
    timestep     (B,) int64    }               m_next, u_next, w_next
    prev_action  (B, act_dim)  }   (its next value is ``action``)
    m, u (B, L, H); w (B, L, H, dh) float32

Inside: ``start = timestep < 0``; ``rtg' = rtg if start else rtg - prev_reward``;
``t = timestep + 1``; observation normalised ``(obs - mean) / std``; return-to-go scaled
``rtg' / return_scale``; then ``FusedAarenPolicy`` (tokens ``a_{t-1}, R_t, s_t``). An episode
starts when the runtime passes the *initial rows*: rtg = target return, timestep = -1,
prev_action = 0, m = -inf, u = 0, w = 0 (prev_reward is then ignored). The batch axis is
dynamic. The contract, the initial values and the agent's metadata (env id, sizes, target
return, package version) are written into the file's ``metadata_props``; ``eval.onnx_agent``
reads them, so the .onnx file is all a deployment needs.

A Transformer checkpoint is refused: its state is a KV cache that grows by three slots per
environment step, so no constant-shape step graph exists (a K-step window graph would be
possible but is not provided).

Example:
    $ aaren-export --checkpoint runs/hopper/checkpoint --out policy.onnx
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aaren_policy import DecisionModel, __version__
from aaren_policy.fused import FusedAarenPolicy, FusedState, trace_policy
from agents import DecisionAgent
from agents.checkpoint import CheckpointError, load_model
from eval.onnx_agent import OnnxAgent

__all__ = [
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "STATE_NEXT",
    "DeployStep",
    "ExportConfig",
    "ExportError",
    "TracedAgent",
    "compiled_bench_agent",
    "export_onnx",
    "main",
    "onnx_bench_agent",
]

INPUT_NAMES = ["obs", "prev_reward", "rtg", "timestep", "prev_action", "m", "u", "w"]
OUTPUT_NAMES = ["action", "rtg_next", "timestep_next", "m_next", "u_next", "w_next"]
# state input -> the output that is its value at the next call
STATE_NEXT = {
    "rtg": "rtg_next",
    "timestep": "timestep_next",
    "prev_action": "action",
    "m": "m_next",
    "u": "u_next",
    "w": "w_next",
}
ONNX_FORMAT = 1


class ExportError(ValueError):
    """The checkpoint cannot be exported as asked (wrong backbone, missing dependency...)."""


class DeployStep(nn.Module):
    """``DecisionAgent.predict`` (recurrent mode) as one tensor function; see the module doc.

    Args:
        model: an Aaren ``DecisionModel``.
        state_mean, state_std: (obs_dim,) observation statistics.
        return_scale: returns-to-go are divided by it before entering the model.
    """

    def __init__(
        self,
        model: DecisionModel,
        state_mean: np.ndarray,
        state_std: np.ndarray,
        return_scale: float,
    ) -> None:
        super().__init__()
        self.policy = FusedAarenPolicy(model)
        self.register_buffer("mean", torch.as_tensor(np.asarray(state_mean, dtype=np.float32)))
        self.register_buffer("std", torch.as_tensor(np.asarray(state_std, dtype=np.float32)))
        self.return_scale = float(return_scale)

    def forward(
        self,
        obs: torch.Tensor,
        prev_reward: torch.Tensor,
        rtg: torch.Tensor,
        timestep: torch.Tensor,
        prev_action: torch.Tensor,
        m: torch.Tensor,
        u: torch.Tensor,
        w: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        start = timestep < 0
        # DecisionAgent: rtg -= previous reward (float64), except at an episode's start.
        rtg_next = torch.where(start, rtg, rtg - prev_reward)
        t = timestep + 1
        obs_n = (obs - self.mean) / self.std
        rtg_s = (rtg_next / self.return_scale).to(obs.dtype).unsqueeze(-1)
        action, st = self.policy(obs_n, rtg_s, t, FusedState(m, u, w, prev_action, timestep))
        return action, rtg_next, t, st.m, st.u, st.w


def initial_state(policy: FusedAarenPolicy, batch: int, target_return: float) -> dict[str, Any]:
    """The initial state rows as numpy arrays, keyed by input name."""
    n, h, dh = policy.num_layers, policy.num_heads, policy.head_dim
    return {
        "rtg": np.full(batch, target_return, dtype=np.float64),
        "timestep": np.full(batch, -1, dtype=np.int64),
        "prev_action": np.zeros((batch, policy.act_dim), dtype=np.float32),
        "m": np.full((batch, n, h), -np.inf, dtype=np.float32),
        "u": np.zeros((batch, n, h), dtype=np.float32),
        "w": np.zeros((batch, n, h, dh), dtype=np.float32),
    }


@dataclass
class ExportConfig:
    """Settings of ``aaren-export``."""

    checkpoint: Path
    """Checkpoint directory written by aaren-train (model.safetensors + agent.json)."""
    out: Path = Path("policy.onnx")
    """Where to write the ONNX file."""
    target_return: float | None = None
    """Return-to-go an episode starts from; default: the checkpoint's target return."""
    opset: int = 17
    """ONNX opset (17: LayerNormalization is a single node)."""
    verify: bool = True
    """Run the exported graph in onnxruntime against PyTorch for 5 steps, batch 2."""


def _metadata(meta: dict[str, Any], model: DecisionModel, target_return: float) -> dict[str, str]:
    cfg = model.config
    state_shapes = {
        "rtg": ["B"],
        "timestep": ["B"],
        "prev_action": ["B", cfg.act_dim],
        "m": ["B", cfg.net.num_layers, cfg.net.num_heads],
        "u": ["B", cfg.net.num_layers, cfg.net.num_heads],
        "w": ["B", cfg.net.num_layers, cfg.net.num_heads, cfg.net.dim // cfg.net.num_heads],
    }
    contract = {
        "inputs": INPUT_NAMES,
        "outputs": OUTPUT_NAMES,
        "state_next": STATE_NEXT,
        "state_shapes": state_shapes,
        "initial_state": {
            "rtg": "target_return",
            "timestep": -1,
            "prev_action": 0.0,
            "m": "-inf",
            "u": 0.0,
            "w": 0.0,
        },
        "episode_start": "pass the initial state rows; prev_reward is then ignored",
        "reward": "prev_reward is the reward the env returned for the previous action",
    }
    return {
        "aaren.format": str(ONNX_FORMAT),
        "aaren.env_id": str(meta.get("env_id") or ""),
        "aaren.obs_dim": str(cfg.obs_dim),
        "aaren.act_dim": str(cfg.act_dim),
        "aaren.target_return": repr(float(target_return)),
        "aaren.return_scale": repr(float(meta["return_scale"])),
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


def export_onnx(config: ExportConfig) -> Path:
    """Export a checkpoint's step graph; returns the written path.

    Raises:
        ExportError: a non-Aaren checkpoint, or onnx missing.
        CheckpointError: the checkpoint cannot be read.
    """
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ExportError("aaren-export needs onnx: pip install 'aaren-rl[onnx]'") from e
    directory = Path(config.checkpoint)
    model, meta = load_model(directory, "cpu")
    _check_exportable(model, directory)
    target = float(meta["target_return"] if config.target_return is None else config.target_return)
    step = DeployStep(model, meta["state_mean"], meta["state_std"], meta["return_scale"]).eval()
    example = _example_inputs(step, 2, target)
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
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
    for key, value in _metadata(meta, model, target).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"aaren-rl {__version__} step graph of {directory}"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    if config.verify:
        _verify(step, out, target)
    return out


def _example_inputs(step: DeployStep, batch: int, target: float) -> dict[str, np.ndarray]:
    gen = np.random.default_rng(0)
    obs_dim = step.policy.obs_dim
    return {
        "obs": gen.standard_normal((batch, obs_dim)).astype(np.float32),
        "prev_reward": np.zeros(batch, dtype=np.float64),
        **initial_state(step.policy, batch, target),
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


# ---- agents for ``aaren-bench act`` (eval/bench_act.py ACT_AGENTS) ---------------------------


class TracedAgent(DecisionAgent):
    """``DecisionAgent`` (recurrent, Aaren) acting with a TorchScript trace of the fused step.

    Batch size is fixed by the trace: ``reset(num_envs)`` re-traces when it changes.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.fused:
            raise ExportError("TracedAgent needs recurrent mode and an Aaren backbone")
        self._traced: Any = None
        self._traced_batch = 0

    @property
    def params(self) -> int:
        return self.model.num_parameters()

    def _predict_fused(
        self, obs: torch.Tensor, rtg: torch.Tensor, time: torch.Tensor, start: np.ndarray
    ) -> torch.Tensor:
        policy = self._fused_policy()
        if self._traced is None or self._traced_batch != obs.shape[0]:
            self._traced, self._traced_batch = trace_policy(policy, obs.shape[0]), obs.shape[0]
        if start.any():
            self.state = policy.reset_state(self.state, torch.as_tensor(start, device=self.device))
        action, *state = self._traced(obs, rtg, time, *self.state)
        self.state = FusedState(*state)
        return action


class _BenchOnnxAgent(OnnxAgent):
    params = 0


def _bench_model(cfg: Any) -> tuple[DecisionModel, dict[str, Any]]:
    from aaren_policy import BackboneConfig, DecisionModelConfig

    torch.manual_seed(cfg.seed)
    net = BackboneConfig(dim=cfg.dim, num_layers=cfg.num_layers, num_heads=cfg.num_heads)
    model = DecisionModel(DecisionModelConfig(cfg.obs_dim, cfg.act_dim, "aaren", net))
    kw = {"state_mean": np.zeros(cfg.obs_dim), "state_std": np.ones(cfg.obs_dim)}
    return model, {**kw, "return_scale": 1000.0, "target_return": 3600.0}


def compiled_bench_agent(cfg: Any) -> TracedAgent:
    """``aaren-compiled``: the fused step traced with TorchScript (frozen, optimised)."""
    model, kw = _bench_model(cfg)
    return TracedAgent(model, **kw)


def onnx_bench_agent(cfg: Any) -> OnnxAgent:
    """``aaren-onnx``: the exported step graph in onnxruntime, 1 thread."""
    import tempfile

    model, kw = _bench_model(cfg)
    directory = Path(tempfile.mkdtemp(prefix="aaren-bench-onnx-"))
    ckpt = DecisionAgent(model, **kw, env_id="bench").save(directory / "ckpt")
    path = export_onnx(ExportConfig(ckpt, directory / "policy.onnx", verify=False))
    agent = _BenchOnnxAgent(path, threads=cfg.threads)
    agent.params = model.num_parameters()
    return agent


def main(argv: list[str] | None = None) -> None:
    """Console entry point ``aaren-export``."""
    import tyro

    config = tyro.cli(ExportConfig, args=argv)
    try:
        out = export_onnx(config)
    except (ExportError, CheckpointError) as e:
        raise SystemExit(f"aaren-export: {e}") from None
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
