"""Benchmark the prefix-attention scan methods: time and memory of forward + backward.

For each sequence length T it times ``prefix_attention`` (forward, then backward of a random
linear functional of the output) for every method: chunked at a few chunk sizes,
Hillis-Steele, sequential (only up to ``--sequential-max-t``: a Python loop over tokens) and
naive (only when its O(T^2) tensors fit ``--naive-max-mb``). It reports

- the median (and min) wall time of ``--repeats`` forward + backward passes (after one
  warm-up),
- the median time of the forward alone under ``torch.no_grad`` (the rollout-time cost),
- the bytes autograd saves for backward, counted with ``saved_tensors_hooks`` as the
  distinct storages kept alive (the inputs themselves excluded): a deterministic proxy for
  training memory that does not depend on the allocator.

Writes a Markdown table to stdout and everything to ``OUT/scan_bench.json``.

    aaren-bench scan --repeats 9 --out docs/results  # the table in docs/core.md
    aaren-bench scan --lengths 60 --repeats 3       # quick: runs/bench/scan_bench.json
    python -m aaren_rl.bench.scan --help            # the same command
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from aaren_rl.aaren_policy.scan import DEFAULT_CHUNK, prefix_attention
from aaren_rl.bench.common import RESULTS, machine, write_json
from aaren_rl.cli import run_cli
from aaren_rl.errors import ConfigError
from aaren_rl.fileio import check_output_dir

DEFAULT_SEQUENCES = {60: 64, 600: 4, 3000: 4}
"""B*H sequences per length: a Decision-Transformer batch (64 sequences of K=20 timesteps,
60 tokens) and a few long-context sequences (600 and 3000 tokens)."""


@dataclass
class Row:
    t: int
    sequences: int
    method: str
    chunk: int | None
    fwd_bwd_ms: float
    fwd_bwd_min_ms: float
    fwd_ms: float
    saved_mb: float


def saved_bytes(fn, inputs: tuple[torch.Tensor, ...]) -> int:
    """Bytes of the distinct storages autograd keeps for backward (inputs excluded)."""
    exclude = {x.untyped_storage().data_ptr() for x in inputs}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in exclude:
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def timings_ms(fn, repeats: int) -> tuple[float, float]:
    """(median, min) wall time in ms of ``repeats`` calls after one warm-up. The min is the
    less contention-sensitive of the two on a shared machine."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times), 1e3 * min(times)


def bench_one(
    method: str, chunk: int | None, n: int, t: int, d: int, repeats: int, seed: int = 0
) -> Row:
    g = torch.Generator().manual_seed(seed)
    scores = (3 * torch.randn(n, t, generator=g)).requires_grad_()
    values = torch.randn(n, t, d, generator=g).requires_grad_()
    grad_out = torch.randn(n, t, d, generator=g)
    kw = {"method": method, "chunk_size": chunk or DEFAULT_CHUNK}

    def forward() -> torch.Tensor:
        return prefix_attention(scores, values, **kw)[0]

    def forward_backward() -> None:
        scores.grad = values.grad = None
        forward().backward(grad_out)

    def inference() -> None:
        with torch.no_grad():
            forward()

    saved = saved_bytes(forward, (scores, values, grad_out))
    fwd_bwd, fwd_bwd_min = timings_ms(forward_backward, repeats)
    return Row(
        t=t,
        sequences=n,
        method=method,
        chunk=chunk,
        fwd_bwd_ms=fwd_bwd,
        fwd_bwd_min_ms=fwd_bwd_min,
        fwd_ms=timings_ms(inference, repeats)[0],
        saved_mb=saved / 2**20,
    )


def naive_mb(n: int, t: int) -> float:
    """Rough size of one (N, T, T) float32 tensor of the naive method (it keeps a few)."""
    return n * t * t * 4 / 2**20


@dataclass
class ScanConfig:
    """Time and memory of the prefix-attention scan methods, forward + backward (also
    ``python -m aaren_rl.bench.scan``)."""

    lengths: tuple[int, ...] = tuple(DEFAULT_SEQUENCES)
    """Sequence lengths T (tokens)."""
    sequences: tuple[int, ...] = ()
    """B*H sequences for each length (default: 64 at T=60, 4 at 600 and 3000, else 4)."""
    dim: int = 128
    """Value width D (head size)."""
    chunks: tuple[int, ...] = (16, 32, 64)
    """Chunk sizes of the chunked method."""
    repeats: int = 5
    """Timed repeats (median reported)."""
    threads: int = 1
    """torch intra-op threads."""
    sequential_max_t: int = 600
    """Run the sequential reference (a Python loop over tokens) only up to this T."""
    naive_max_mb: float = 200.0
    """Skip naive when one (N, T, T) float32 tensor exceeds this many MB."""
    out: Path = RESULTS
    """Folder for scan_bench.json."""

    def __post_init__(self) -> None:
        if self.sequences and len(self.sequences) != len(self.lengths):
            raise ConfigError("--sequences needs one value per --lengths value")
        if min(self.lengths, default=0) < 1 or self.repeats < 1:
            raise ConfigError("--lengths and --repeats must be >= 1")


def _plan(cfg: ScanConfig, t: int, n: int) -> list[tuple[str, int | None]]:
    plan: list[tuple[str, int | None]] = [("chunked", c) for c in cfg.chunks]
    plan.append(("hillis_steele", None))
    if t <= cfg.sequential_max_t:
        plan.append(("sequential", None))
    if naive_mb(n, t) <= cfg.naive_max_mb:
        plan.append(("naive", None))
    return plan


def run_scan(cfg: ScanConfig) -> list[Row]:
    """Time every method at every length; print the table and write ``out/scan.json``."""
    check_output_dir(cfg.out, "--out")
    torch.set_num_threads(cfg.threads)
    sequences = list(cfg.sequences) or [DEFAULT_SEQUENCES.get(t, 4) for t in cfg.lengths]
    rows: list[Row] = []
    header = (
        "| T | sequences | method | fwd+bwd ms (median) | fwd+bwd ms (min) "
        "| fwd ms (no_grad, median) | saved for bwd MB |"
    )
    print(header + "\n|---:|---:|---|---:|---:|---:|---:|", flush=True)
    for t, n in zip(cfg.lengths, sequences):
        for method, chunk in _plan(cfg, t, n):
            row = bench_one(method, chunk, n, t, cfg.dim, cfg.repeats)
            rows.append(row)
            name = f"{method} {chunk}" if chunk else method
            print(
                f"| {t} | {n} | {name} | {row.fwd_bwd_ms:.2f} | {row.fwd_bwd_min_ms:.2f} | "
                f"{row.fwd_ms:.2f} | {row.saved_mb:.1f} |",
                flush=True,
            )
    result = {
        "machine": machine(),
        "threads": cfg.threads,
        "dim": cfg.dim,
        "dtype": "float32",
        "repeats": cfg.repeats,
        "command": "aaren-bench scan " + " ".join(sys.argv[2:]),
        "rows": [asdict(r) for r in rows],
    }
    path = write_json(Path(cfg.out) / "scan_bench.json", result)
    print(f"\nwrote {path}")
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m aaren_rl.bench.scan`` (the same as ``aaren-bench scan``)."""
    import tyro

    def body() -> None:
        run_scan(tyro.cli(ScanConfig, args=argv))

    return run_cli("aaren-bench scan", body)


if __name__ == "__main__":
    sys.exit(main())
