"""Training cost: step time per precision (fp32, bf16, compiled) and activation memory.

One training step = forward over K timesteps (3K tokens) under the precision's autocast +
MSE loss on actions (float32) + backward + gradient clipping (0.25) + AdamW step, on random
data, in train mode (dropout 0.1), DT size: the same step ``aaren-train`` takes. Defaults:
K = 20 with batch 64 (the DT window recipe) and K = 1000 with batch 4 (the episode recipe's
whole-episode windows), each backbone in every ``--precision`` and, compiled with
``torch.compile``, in every ``--compile`` precision.

Time: median over ``steps`` measured steps after ``warmup`` steps. ``first_step_s`` is the
first step's time: for a compiled model it includes compilation, so
``(first_step_s - step) / (eager step - compiled step)`` is the number of steps a compiled
run needs before it is ahead (the break-even printed in the table).

d3rlpy's DT (the peer) is timed in the same run where its virtual environment exists
(``--peer-python``, made by bench/peer/setup_d3rlpy.sh): bench/peer/d3rlpy_dt.py trains it
for ``peer_steps`` steps at K = 20, batch 64 on a small synthetic Hopper-format dataset and
reports its median step (which also includes d3rlpy's batch sampling and bookkeeping).

Memory: the bytes of the tensors autograd saves for the backward pass during one forward
(``torch.autograd.graph.saved_tensors_hooks``; distinct storages counted once), eager only.
Parameters, gradients and the AdamW state (4 x params x 4 bytes, ``param_state_bytes``)
come on top, the same for both backbones.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from aaren_rl.aaren_policy import BackboneConfig
from aaren_rl.aaren_policy.precision import autocast, resolve_precision
from aaren_rl.bench.common import ModelSize, bench_model
from aaren_rl.cpu import cpu_record, fp32_peak_gflops, freed_memory_env

__all__ = [
    "TrainBenchConfig",
    "TrainRecord",
    "measure_peer",
    "run_train_bench",
    "side_by_side",
    "train_targets",
]

PEER_SCRIPT = Path(__file__).resolve().parent / "peer" / "d3rlpy_dt.py"


@dataclass
class TrainBenchConfig(ModelSize):
    """Settings of ``aaren-bench train`` (model, obs/act sizes and seed: :class:`ModelSize`)."""

    context_lengths: tuple[int, ...] = (20, 1000)
    """K values (timesteps; 3K tokens)."""
    batch_sizes: tuple[int, ...] = (64, 4)
    """Batch size for each K (same length as context_lengths)."""
    backbones: tuple[str, ...] = ("aaren", "transformer")
    """Backbones compared."""
    precision: tuple[Literal["auto", "fp32", "bf16"], ...] = ("fp32", "bf16")
    """Precisions timed eagerly (auto: bf16 where the CPU/GPU computes it natively)."""
    compile: tuple[Literal["auto", "fp32", "bf16"], ...] = ("bf16",)
    """Precisions also timed with torch.compile (its warm-up is reported); () skips it."""
    compile_max_k: int = 100
    """Compiled variants only at K <= this: compiling Aaren's chunked scan at K = 1000 (47
    chunks, unrolled by torch.compile) ran for over 10 minutes on this CPU."""
    warmup: int = 2
    """Untimed steps first (after the first step, which is timed separately)."""
    steps: int = 5
    """Timed steps (median reported)."""
    model: BackboneConfig = field(default_factory=BackboneConfig)
    """Size of both backbones (DT defaults: dim 128, 3 layers, 1 head, dropout 0.1, gelu)."""
    threads: int = 1
    """torch intra-op threads."""
    device: Literal["cpu", "cuda"] = "cpu"
    """Where the step runs (cuda: the first GPU; each timed step ends with a synchronize)."""
    peer: bool = True
    """Time d3rlpy's DT step too, where --peer-python exists."""
    peer_python: Path = Path(".venv-d3rlpy/bin/python")
    """Python of d3rlpy's own virtual environment (bench/peer/setup_d3rlpy.sh)."""
    peer_steps: int = 40
    """Gradient steps of the d3rlpy run (its median step is reported)."""

    def __post_init__(self) -> None:
        if len(self.context_lengths) != len(self.batch_sizes):
            raise ValueError(
                f"context_lengths {self.context_lengths} and batch_sizes {self.batch_sizes} "
                "must have the same length (one batch size per K)"
            )
        if min(self.context_lengths, default=1) < 1 or min(self.batch_sizes, default=1) < 1:
            raise ValueError(
                f"--context-lengths {self.context_lengths} and --batch-sizes "
                f"{self.batch_sizes} must be >= 1"
            )
        if self.steps < 1 or self.warmup < 0:
            raise ValueError(f"steps must be >= 1 and warmup >= 0, got {self.steps}, {self.warmup}")
        if not self.precision and not self.compile:
            raise ValueError("nothing to time: give --precision and/or --compile")


@dataclass
class TrainRecord:
    """One point of the benchmark (the JSON record)."""

    backbone: str
    context_length: int
    batch_size: int
    tokens: int
    precision: str
    compiled: bool
    step_s_median: float
    step_s_min: float
    first_step_s: float
    saved_tensor_bytes: int | None
    param_state_bytes: int
    params: int
    threads: int
    flops_per_step: float | None = None
    """Floating-point operations of one step (forward + backward; FlopCounterMode: matrix
    products and attention, not element-wise ops or the optimiser); None for d3rlpy's."""
    gflops_per_s: float | None = None
    """flops_per_step over the median step."""
    fp32_peak_fraction: float | None = None
    """gflops_per_s over the threads' fp32 peak (``aaren_rl.cpu.fp32_peak_gflops``), fp32."""


def _batch(b: int, k: int, cfg: TrainBenchConfig, gen: torch.Generator) -> tuple:
    rtg = torch.randn(b, k, 1, generator=gen)
    obs = torch.randn(b, k, cfg.obs_dim, generator=gen)
    act = torch.rand(b, k, cfg.act_dim, generator=gen) * 2 - 1
    ts = torch.arange(k).expand(b, k)
    return rtg, obs, act, ts


def step_flops(loss: Callable[[], torch.Tensor]) -> float:
    """FLOPs of one forward + backward as PyTorch's FlopCounterMode counts them (every
    matrix product, convolution and attention kernel; element-wise ops are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        loss().backward()
    return float(counter.get_total_flops())


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


def _measure(
    backbone: str, k: int, b: int, precision: str, compiled: bool, cfg: TrainBenchConfig
) -> TrainRecord:
    device = torch.device(cfg.device)
    model = bench_model(cfg, backbone).to(device).train()
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(cfg.seed)
    rtg, obs, act, ts = (x.to(device) for x in _batch(b, k, cfg, gen))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def loss() -> torch.Tensor:
        with autocast(precision, device):
            pred, _ = forward(rtg, obs, act, ts)
        return nn.functional.mse_loss(pred.float(), act)  # the loss in float32

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss().backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
        sync()

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    for _ in range(cfg.warmup):
        step()
    times = []
    for _ in range(cfg.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    saved = None if compiled else saved_tensor_bytes(loss, exclude=model)
    flops = None if compiled else step_flops(loss)
    med = statistics.median(times)
    gflops = flops / med / 1e9 if flops else None
    peak = fp32_peak_gflops(cpu_record()) * torch.get_num_threads()
    cpu_fp32 = precision == "fp32" and device.type == "cpu"
    fraction = gflops / peak if gflops and cpu_fp32 and peak > 0 else None
    params = model.num_parameters()
    return TrainRecord(
        backbone=backbone,
        context_length=k,
        batch_size=b,
        tokens=3 * k * b,
        precision=precision,
        compiled=compiled,
        step_s_median=med,
        step_s_min=min(times),
        first_step_s=first,
        saved_tensor_bytes=saved,
        param_state_bytes=4 * 4 * params,  # weights, grads, AdamW exp_avg and exp_avg_sq
        params=params,
        threads=torch.get_num_threads(),
        flops_per_step=flops,
        gflops_per_s=gflops,
        fp32_peak_fraction=fraction,
    )


def _synthetic_hopper(path: Path, seed: int = 0) -> Path:
    """A small Hopper-format D4RL file (random contents) for timing the peer's step."""
    import h5py

    rng = np.random.default_rng(seed)
    lengths = rng.integers(60, 200, 30)
    n = int(lengths.sum())
    ends = np.cumsum(lengths) - 1
    terminals = np.zeros(n, bool)
    terminals[ends] = True
    with h5py.File(path, "w") as f:
        f["observations"] = rng.normal(size=(n, 11)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
        f["rewards"] = rng.uniform(0, 3, n).astype(np.float32)
        f["terminals"] = terminals
        f["timeouts"] = np.zeros(n, bool)
        f.attrs["env_id"] = "Hopper-v5"  # as aaren-collect's files: the peer script needs it
    return path


def measure_peer(cfg: TrainBenchConfig, log: Callable[[str], None] = print) -> TrainRecord | None:
    """d3rlpy's DT step at K = 20, batch 64, in its own venv; None where it is not set up."""
    python = Path(cfg.peer_python)
    if not cfg.peer or not python.exists():
        log(f"d3rlpy: skipped ({python} not found; bench/peer/setup_d3rlpy.sh makes it)")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        data = _synthetic_hopper(Path(tmp) / "hopper-synthetic.hdf5", cfg.seed)
        out = Path(tmp) / "d3rlpy.json"
        cmd = [str(python), str(PEER_SCRIPT), "--dataset", str(data), "--steps"]
        cmd += [str(cfg.peer_steps), "--eval-episodes", "1", "--threads", str(cfg.threads)]
        cmd += ["--device", "cuda:0" if cfg.device == "cuda" else "cpu:0"]
        cmd += ["--out", str(out), "--log-every", "0"]  # 1 eval episode: untrained, it falls
        try:
            env = {**os.environ, **freed_memory_env()}  # the allocator settings ours has
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800, env=env)
            rec = json.loads(out.read_text())
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            tail = getattr(e, "stderr", "") or ""
            log(f"d3rlpy: failed ({e!r}) {tail[-500:]}")
            return None
    med = rec.get("train_seconds_per_step")
    if med is None:
        log("d3rlpy: no step time in its JSON")
        return None
    params = int(rec.get("settings", {}).get("parameters", 0) or 0)
    return TrainRecord(
        backbone="d3rlpy-dt",
        context_length=20,
        batch_size=64,
        tokens=3 * 20 * 64,
        precision="fp32",
        compiled=False,
        step_s_median=float(med),
        step_s_min=float(med),
        first_step_s=float("nan"),
        saved_tensor_bytes=None,
        param_state_bytes=4 * 4 * params,
        params=params,
        threads=cfg.threads,
    )


def run_train_bench(cfg: TrainBenchConfig, log: Callable[[str], None] = print) -> list[TrainRecord]:
    """Run the benchmark; one record per (K, backbone, precision, compiled), then the peer."""
    torch.set_num_threads(cfg.threads)
    variants = [(resolve_precision(p, cfg.device), False) for p in cfg.precision]
    variants += [(resolve_precision(p, cfg.device), True) for p in cfg.compile]
    records = []
    for k, b in zip(cfg.context_lengths, cfg.batch_sizes):
        for backbone in cfg.backbones:
            for precision, compiled in dict.fromkeys(variants):
                if compiled and k > cfg.compile_max_k:
                    continue
                rec = _measure(backbone, k, b, precision, compiled, cfg)
                saved = "-" if rec.saved_tensor_bytes is None else rec.saved_tensor_bytes / 2**20
                log(
                    f"K={k:5d} batch={b:3d} {backbone:12s} {precision}"
                    f"{' compiled' if compiled else '         '}  step "
                    f"{rec.step_s_median * 1e3:8.1f} ms  first step {rec.first_step_s:6.1f} s  "
                    f"saved {saved if isinstance(saved, str) else f'{saved:.1f}'} MiB"
                )
                records.append(rec)
    peer = measure_peer(cfg, log)
    if peer is not None:
        log(f"K=   20 batch= 64 d3rlpy-dt    fp32  step {peer.step_s_median * 1e3:8.1f} ms")
        records.append(peer)
    log("\n" + side_by_side(records))
    return records


def records_to_json(records: list[TrainRecord]) -> list[dict]:
    return [asdict(r) for r in records]


def _label(precision: str, compiled: bool) -> str:
    return f"{precision}{' compiled' if compiled else ''}"


def side_by_side(records: list[TrainRecord]) -> str:
    """Markdown: one row per (backbone, K, batch), one ms/step column per variant, the
    bf16 / fp32 ratio and each compiled variant's break-even step count."""
    variants = list(dict.fromkeys(_label(r.precision, r.compiled) for r in records))
    head = ["backbone", "K", "batch", *[f"{v} ms" for v in variants], "bf16 / fp32"]
    compiled = [v for v in variants if v.endswith("compiled")]
    head += [f"{v}: steps to break even" for v in compiled]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups: dict[tuple, dict[str, TrainRecord]] = {}
    for r in records:
        groups.setdefault((r.backbone, r.context_length, r.batch_size), {})[
            _label(r.precision, r.compiled)
        ] = r
    for (bb, k, b), by in groups.items():
        cells = [bb, str(k), str(b)]
        cells += [f"{by[v].step_s_median * 1e3:.0f}" if v in by else "-" for v in variants]
        fp, bf = by.get("fp32"), by.get("bf16")
        cells.append(f"{bf.step_s_median / fp.step_s_median:.2f}" if fp and bf else "-")
        for v in compiled:
            cells.append(_break_even(by.get(v), by.get(v.removesuffix(" compiled"))))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _break_even(comp: TrainRecord | None, eager: TrainRecord | None) -> str:
    if comp is None or eager is None:
        return "-"
    gain = eager.step_s_median - comp.step_s_median
    if gain <= 0:
        return f"never (compiled {comp.step_s_median / eager.step_s_median:.2f}x eager)"
    extra = comp.first_step_s - eager.first_step_s
    return f"{max(0.0, extra) / gain:.0f} (warm-up {comp.first_step_s:.0f} s)"


def _ratio_target(
    target: str,
    num: TrainRecord,
    den: TrainRecord,
    limit: float,
    strict: bool = False,
    ratio: str = "{:.2f}x",
) -> dict:
    """A target met when ``num``'s median step / ``den``'s is <= ``limit`` (< when strict)."""
    r = num.step_s_median / den.step_s_median
    return {
        "target": target,
        "measured": f"{num.step_s_median * 1e3:.0f} vs {den.step_s_median * 1e3:.0f} ms "
        f"({ratio.format(r)})",
        "met": r < limit if strict else r <= limit,
    }


def train_targets(records: list[TrainRecord]) -> list[dict]:
    """Aaren vs Transformer (fp32, eager); bf16 >= 2x fp32; bf16 >= 2x faster than d3rlpy."""
    by = {(r.backbone, r.context_length, _label(r.precision, r.compiled)): r for r in records}
    out = []
    for k, want in ((20, "no slower than"), (1000, "faster than")):
        a, t = by.get(("aaren", k, "fp32")), by.get(("transformer", k, "fp32"))
        if a is not None and t is not None:
            target = f"aaren training step at K={k} {want} transformer (fp32)"
            out.append(_ratio_target(target, a, t, 1.0, strict=k != 20, ratio="ratio {:.2f}"))
    peer = by.get(("d3rlpy-dt", 20, "fp32"))
    for bb in ("aaren", "transformer"):
        fp, bf = by.get((bb, 20, "fp32")), by.get((bb, 20, "bf16"))
        if fp is not None and bf is not None:
            target = f"{bb} bf16 step <= 0.5x fp32 step (K=20, batch 64)"
            out.append(_ratio_target(target, bf, fp, 0.5))
        if peer is not None and bf is not None:
            target = f"{bb} bf16 step <= 0.5x d3rlpy DT step (K=20, batch 64)"
            out.append(_ratio_target(target, bf, peer, 0.5))
    return out


if __name__ == "__main__":  # quick look without the CLI: python -m aaren_rl.bench.train
    import tyro

    run_train_bench(tyro.cli(TrainBenchConfig, args=sys.argv[1:]))
