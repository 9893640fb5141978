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

Writes a Markdown table to stdout and everything to ``--json``.

    python bench/scan_bench.py                       # the table in docs/core.md
    python bench/scan_bench.py --lengths 60 --repeats 3 --json /tmp/quick.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from aaren_rl.aaren_policy.scan import DEFAULT_CHUNK, prefix_attention

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


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_SEQUENCES))
    p.add_argument(
        "--sequences",
        type=int,
        nargs="+",
        default=None,
        help="B*H sequences for each length (default: 64 at T=60, 4 at 600 and 3000, else 4)",
    )
    p.add_argument("--dim", type=int, default=128, help="value width D (head size)")
    p.add_argument("--chunks", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--sequential-max-t", type=int, default=600)
    p.add_argument(
        "--naive-max-mb",
        type=float,
        default=200.0,
        help="skip naive when one (N, T, T) float32 tensor exceeds this",
    )
    p.add_argument("--json", type=Path, default=Path("docs/results/scan_bench.json"))
    args = p.parse_args(argv)
    if args.sequences is not None and len(args.sequences) != len(args.lengths):
        p.error("--sequences needs one value per --lengths value")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    sequences = args.sequences or [DEFAULT_SEQUENCES.get(t, 4) for t in args.lengths]
    rows: list[Row] = []
    header = (
        "| T | sequences | method | fwd+bwd ms (median) | fwd+bwd ms (min) "
        "| fwd ms (no_grad, median) | saved for bwd MB |"
    )
    print(header + "\n|---:|---:|---|---:|---:|---:|---:|", flush=True)
    for t, n in zip(args.lengths, sequences):
        plan: list[tuple[str, int | None]] = [("chunked", c) for c in args.chunks]
        plan.append(("hillis_steele", None))
        if t <= args.sequential_max_t:
            plan.append(("sequential", None))
        if naive_mb(n, t) <= args.naive_max_mb:
            plan.append(("naive", None))
        for method, chunk in plan:
            row = bench_one(method, chunk, n, t, args.dim, args.repeats)
            rows.append(row)
            name = f"{method} {chunk}" if chunk else method
            print(
                f"| {t} | {n} | {name} | {row.fwd_bwd_ms:.2f} | {row.fwd_bwd_min_ms:.2f} | "
                f"{row.fwd_ms:.2f} | "
                f"{row.saved_mb:.1f} |",
                flush=True,
            )
    result = {
        "machine": cpu_model(),
        "torch": torch.__version__,
        "threads": args.threads,
        "dim": args.dim,
        "dtype": "float32",
        "repeats": args.repeats,
        "command": "python bench/scan_bench.py " + " ".join(argv or sys.argv[1:]),
        "rows": [asdict(r) for r in rows],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
