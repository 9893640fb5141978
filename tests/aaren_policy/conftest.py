"""Shared set-up for the aaren_policy tests."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `pytest` (unlike `python -m pytest`) does not add the cwd
    sys.path.insert(0, str(ROOT))

# The tensors here are tiny: intra-op threads only add overhead, and on a shared machine
# spinning OpenMP workers make every small op ~100x slower under load.
torch.set_num_threads(1)
