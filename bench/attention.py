"""``aaren-bench attention``: how local is a trained Aaren model's attention?

Each Aaren layer attends with one learned query over every earlier token, so what recurrent
acting feeds a layer is a weighted mean of the whole history. When the scores barely differ
(a fresh or briefly trained model: docs/research/recipe.md, "Recurrent vs window acting"), that
mean is near uniform, and acting recurrently (whole episode) and through a window (last K
steps) feed the layers different averages of the same tokens. This command measures it on
dataset episodes, teacher-forced as in training:

- **share of the last K steps**: the attention weight that the state token of step t puts on
  the last K steps' tokens up to it (``R_{t-K+1}, s_{t-K+1}, a_{t-K+1}, ..., R_t, s_t``:
  3K - 1 tokens), against their share of the tokens (``(3K - 1) / (3t + 2)``), the value a
  uniform running mean would give;
- **effective tokens**: ``exp(entropy)`` of those weights (t + 1 steps hold 3t + 2 tokens up
  to the state token): 3t + 2 for a uniform mean, 1 for attention on one token.

Averaged over the dataset's episodes that reach each t (and over heads). Writes
``attention.json`` and prints a table per layer::

    aaren-bench attention --checkpoint runs/returns-10k/hopper-medium__aaren__episode__s0/checkpoint \\
        --dataset d4rl:runs/datasets/hopper-medium.hdf5
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aaren_rl.aaren_policy.aaren import Aaren
from aaren_rl.errors import ConfigError

__all__ = ["AttentionConfig", "attention_locality", "run_attention"]


@dataclass
class AttentionConfig:
    """Attention locality of a trained Aaren checkpoint on dataset episodes."""

    checkpoint: Path
    """An Aaren checkpoint folder (aaren-train's run_dir/checkpoint)."""
    dataset: str
    """Dataset spec (d4rl:PATH, minari:ID, demo:hopper) whose episodes are fed."""
    steps: tuple[int, ...] = (30, 100, 200, 350, 600, 900)
    """Episode steps t at which the state token's attention is read."""
    window: int = 20
    """K: the window acting mode's length, in steps."""
    episodes: int = 20
    """At most this many episodes (the longest first: they reach the most steps)."""
    out: Path = Path("runs/bench")
    """Folder for attention.json."""


def _episode_inputs(traj: Any, meta: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    """One episode as the model's (rtg, obs, actions, timesteps), batch 1, as in training."""
    mean = np.asarray(meta["state_mean"], dtype=np.float32)
    std = np.asarray(meta["state_std"], dtype=np.float32)
    obs = (traj.observations - mean) / std
    rtg = traj.returns_to_go[:, None] / float(meta["return_scale"])
    return (
        torch.as_tensor(rtg, dtype=torch.float32)[None],
        torch.as_tensor(obs, dtype=torch.float32)[None],
        torch.as_tensor(traj.actions, dtype=torch.float32)[None],
        torch.as_tensor(traj.timesteps, dtype=torch.int64)[None],
    )


def _layer_scores(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """Each Aaren layer's scores (H, tokens) on one teacher-forced episode."""

    layers = [m for m in model.modules() if isinstance(m, Aaren)]
    if not layers:
        raise ConfigError("the checkpoint holds no Aaren layer (a Transformer model?)")
    captured: list[torch.Tensor] = []
    hooks = [
        layer.register_forward_hook(
            lambda mod, args, out: captured.append(mod._scores_values(args[0])[0][0].T)
        )
        for layer in layers
    ]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return captured


def attention_locality(
    model: torch.nn.Module, trajectories: list[Any], meta: dict[str, Any], steps: tuple[int, ...],
    window: int,
) -> list[dict[str, Any]]:  # fmt: skip
    """Per layer and t: mean share of the last ``window`` steps, its uniform value, and the
    effective number of tokens, over the episodes longer than t."""
    acc: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for traj in trajectories:
        for layer, scores in enumerate(_layer_scores(model, _episode_inputs(traj, meta))):
            for t in steps:
                if t >= len(traj.rewards):
                    continue
                i = 3 * t + 1  # the state token of step t (tokens R_0, s_0, a_0, R_1, ...)
                w = torch.softmax(scores[:, : i + 1].double(), dim=-1)  # (H, i + 1)
                # the last K steps up to s_t: R_{t-K+1}, s_{t-K+1}, a_{t-K+1}, ..., R_t, s_t
                share = w[:, max(0, i + 2 - 3 * window) :].sum(-1).mean().item()
                ent = -(w * torch.log(w.clamp_min(1e-300))).sum(-1)
                acc.setdefault((layer, t), []).append((share, float(torch.exp(ent).mean())))
    rows = []
    for (layer, t), vals in sorted(acc.items()):
        arr = np.asarray(vals)
        tokens = 3 * t + 2
        rows.append(
            {
                "layer": layer,
                "t": t,
                "episodes": len(vals),
                "last_window_share": float(arr[:, 0].mean()),
                "uniform_share": min(1.0, (3 * window - 1) / tokens),
                "effective_tokens": float(arr[:, 1].mean()),
                "tokens": tokens,
            }
        )
    return rows


def run_attention(cfg: AttentionConfig) -> dict[str, Any]:
    """Load, measure, print and write ``attention.json``."""
    from aaren_rl.agents.checkpoint import load_model
    from aaren_rl.bench.common import markdown_table, write_json
    from aaren_rl.envs import load_dataset

    model, meta = load_model(cfg.checkpoint, "cpu")
    if model.config.backbone != "aaren":
        raise ConfigError(f"{cfg.checkpoint} holds a {model.config.backbone!r} model, not aaren")
    model.eval()
    ds = load_dataset(cfg.dataset)
    trajs = sorted(ds.trajectories, key=lambda tr: -len(tr.rewards))[: cfg.episodes]
    rows = attention_locality(model, trajs, meta, tuple(cfg.steps), cfg.window)
    shown = [
        {**r, "share": f"{r['last_window_share']:.2f}", "uniform": f"{r['uniform_share']:.2f}",
         "effective": f"{r['effective_tokens']:.0f}"}
        for r in rows
    ]  # fmt: skip
    k = cfg.window
    print(
        markdown_table(
            shown,
            [
                ("layer", "layer"),
                ("t", "t"),
                ("episodes", "episodes"),
                (f"weight on the last {k} steps", "share"),
                ("uniform mean's", "uniform"),
                ("effective tokens", "effective"),
                ("tokens up to s_t", "tokens"),
            ],
        )  # fmt: skip
    )
    out = {"settings": {k: str(v) for k, v in asdict(cfg).items()}, "rows": rows}
    path = write_json(Path(cfg.out) / "attention.json", out)
    print(f"wrote {path}")
    return out
