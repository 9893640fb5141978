"""Training precision: float32, or bfloat16 autocast with the exact parts kept in float32.

``bf16`` runs the forward pass under ``torch.autocast(dtype=torch.bfloat16)``: the matrix
products (linear layers, the Transformer's attention) run in bfloat16, which on CPUs with
AVX512-BF16 / AMX and on recent GPUs is about twice as fast per training step (measured by
``aaren-bench train``, docs/research/recipe.md). What must stay exact stays float32:

- the parameters and the optimiser's state (autocast casts copies; the master weights,
  gradients and AdamW moments are float32), so checkpoints are float32;
- the residual stream and every LayerNorm's statistics: the residual additions promote to
  float32, and LayerNorm on a float32 input computes and returns float32;
- Aaren's scores and its prefix scan (running maximum, denominators, accumulations):
  ``aaren_policy.scan`` switches autocast off and upcasts to float32 inside, and
  ``Aaren`` computes its scores in float32 (aaren.py);
- the loss, computed by the caller on ``preds.float()``.

Acting keeps its own precision (float32 unless an agent is cast).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Literal

import torch

from aaren_rl.cpu import cpu_flags

__all__ = ["PRECISIONS", "autocast", "cpu_supports_bf16", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16")
Precision = Literal["auto", "fp32", "bf16"]


def cpu_supports_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16).

    Without it, bfloat16 matrix products are emulated and slower than float32, so ``auto``
    keeps float32. Reads the Linux CPU flags; False where they cannot be read.
    """
    return bool(cpu_flags(cpuinfo) & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str, device: torch.device | str) -> Literal["fp32", "bf16"]:
    """``auto`` -> ``bf16`` where the device computes bfloat16 natively, else ``fp32``.

    Args:
        precision: one of ``PRECISIONS``.
        device: where the model trains.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision  # type: ignore[return-value]
    dev = torch.device(device)
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if dev.type == "cpu":
        return "bf16" if cpu_supports_bf16() else "fp32"
    return "fp32"


def autocast(
    precision: str, device: torch.device | str
) -> contextlib.AbstractContextManager[object]:
    """The context to run a forward pass in: bfloat16 autocast for ``bf16``, nothing else.

    Example:
        >>> with autocast("bf16", "cpu"):
        ...     y = torch.nn.Linear(4, 4)(torch.randn(2, 4))
        >>> y.dtype
        torch.bfloat16
    """
    if resolve_precision(precision, device) != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
