"""Training cost vs context length: step time and activation memory, Aaren vs Transformer.

One training step = forward over K timesteps (3K tokens) + MSE loss on actions + backward +
gradient clipping (0.25) + AdamW step, on random data, in train mode (dropout 0.1), DT size.
Batch sizes shrink as K grows so that the number of tokens per batch stays comparable
(defaults: 64 at K = 20, 16 at K = 100, 4 at K = 1000: 3840, 4800 and 12000 tokens).

Time: median over ``steps`` measured steps after ``warmup`` steps.

Memory: the bytes of the tensors autograd saves for the backward pass during one forward
(``torch.autograd.graph.saved_tensors_hooks``; distinct storages counted once). That is the
part of peak training memory that depends on K and the backbone; parameters, gradients and
the AdamW state (4 x params x 4 bytes, reported as ``param_state_bytes``) come on top and
are the same for both backbones, and are excluded (weights saved by linear layers too). It is
measured on a separate, untimed forward.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from aaren_rl.aaren_policy import BackboneConfig, DecisionModel, DecisionModelConfig

__all__ = ["TrainBenchConfig", "TrainRecord", "run_train_bench", "train_targets"]


@dataclass
class TrainBenchConfig:
    """Settings of ``aaren-bench train``."""

    context_lengths: tuple[int, ...] = (20, 100, 1000)
    """K values (timesteps; 3K tokens)."""
    batch_sizes: tuple[int, ...] = (64, 16, 4)
    """Batch size for each K (same length as context_lengths)."""
    backbones: tuple[str, ...] = ("aaren", "transformer")
    """Backbones compared."""
    warmup: int = 2
    """Untimed steps first."""
    steps: int = 5
    """Timed steps (median reported)."""
    dim: int = 128
    """Model width (DT default)."""
    num_layers: int = 3
    """Blocks (DT default)."""
    num_heads: int = 1
    """Heads (DT default)."""
    dropout: float = 0.1
    """Dropout (DT default)."""
    obs_dim: int = 11
    """Observation size (Hopper)."""
    act_dim: int = 3
    """Action size (Hopper)."""
    threads: int = 1
    """torch intra-op threads."""
    seed: int = 0
    """Seeds weights and data."""

    def __post_init__(self) -> None:
        if len(self.context_lengths) != len(self.batch_sizes):
            raise ValueError(
                f"context_lengths {self.context_lengths} and batch_sizes {self.batch_sizes} "
                "must have the same length (one batch size per K)"
            )
        if self.steps < 1 or self.warmup < 0:
            raise ValueError(f"steps must be >= 1 and warmup >= 0, got {self.steps}, {self.warmup}")


@dataclass
class TrainRecord:
    """One point of the benchmark (the JSON record)."""

    backbone: str
    context_length: int
    batch_size: int
    tokens: int
    step_s_median: float
    step_s_min: float
    saved_tensor_bytes: int
    param_state_bytes: int
    params: int


def _batch(b: int, k: int, cfg: TrainBenchConfig, gen: torch.Generator) -> tuple:
    rtg = torch.randn(b, k, 1, generator=gen)
    obs = torch.randn(b, k, cfg.obs_dim, generator=gen)
    act = torch.rand(b, k, cfg.act_dim, generator=gen) * 2 - 1
    ts = torch.arange(k).expand(b, k)
    return rtg, obs, act, ts


def saved_tensor_bytes(fn: Callable[[], torch.Tensor], exclude: nn.Module | None = None) -> int:
    """Bytes autograd saves for backward while running ``fn`` (distinct storages once).

    Storages of ``exclude``'s parameters (weights saved by linear layers) are not counted:
    they exist anyway and do not grow with K.
    """
    params = (
        set() if exclude is None else {p.untyped_storage().data_ptr() for p in exclude.parameters()}
    )
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            seen[s.data_ptr()] = max(seen.get(s.data_ptr(), 0), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def _measure(backbone: str, k: int, b: int, cfg: TrainBenchConfig) -> TrainRecord:
    torch.manual_seed(cfg.seed)
    net = BackboneConfig(
        dim=cfg.dim, num_layers=cfg.num_layers, num_heads=cfg.num_heads, dropout=cfg.dropout
    )
    model = DecisionModel(DecisionModelConfig(cfg.obs_dim, cfg.act_dim, backbone, net)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(cfg.seed)
    rtg, obs, act, ts = _batch(b, k, cfg, gen)

    def loss() -> torch.Tensor:
        pred, _ = model(rtg, obs, act, ts)
        return nn.functional.mse_loss(pred, act)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss().backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()

    for _ in range(cfg.warmup):
        step()
    times = []
    for _ in range(cfg.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    saved = saved_tensor_bytes(loss, exclude=model)
    params = model.num_parameters()
    return TrainRecord(
        backbone=backbone,
        context_length=k,
        batch_size=b,
        tokens=3 * k * b,
        step_s_median=statistics.median(times),
        step_s_min=min(times),
        saved_tensor_bytes=saved,
        param_state_bytes=4 * 4 * params,  # weights, grads, AdamW exp_avg and exp_avg_sq
        params=params,
    )


def run_train_bench(cfg: TrainBenchConfig, log: Callable[[str], None] = print) -> list[TrainRecord]:
    """Run the benchmark; one record per (K, backbone)."""
    torch.set_num_threads(cfg.threads)
    records = []
    for k, b in zip(cfg.context_lengths, cfg.batch_sizes):
        for backbone in cfg.backbones:
            rec = _measure(backbone, k, b, cfg)
            log(
                f"K={k:5d} batch={b:3d} {backbone:12s} params {rec.params:,}  "
                f"step {rec.step_s_median * 1e3:8.1f} ms  saved {rec.saved_tensor_bytes / 2**20:8.1f} MiB"
            )
            records.append(rec)
    return records


def records_to_json(records: list[TrainRecord]) -> list[dict]:
    return [asdict(r) for r in records]


def train_targets(records: list[TrainRecord]) -> list[dict]:
    """Aaren no slower than the Transformer at K = 20, faster at K = 1000."""
    by = {(r.backbone, r.context_length): r for r in records}
    out = []
    for k, want in ((20, "no slower than"), (1000, "faster than")):
        a, t = by.get(("aaren", k)), by.get(("transformer", k))
        if a is None or t is None:
            continue
        ratio = a.step_s_median / t.step_s_median
        met = ratio <= 1.0 if k == 20 else ratio < 1.0
        out.append(
            {
                "target": f"aaren training step at K={k} {want} transformer",
                "measured": f"{a.step_s_median * 1e3:.0f} vs {t.step_s_median * 1e3:.0f} ms "
                f"(ratio {ratio:.2f})",
                "met": met,
            }
        )
    return out
