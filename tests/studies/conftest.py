"""The studies are not installed: put the repository root on ``sys.path`` so that
``import studies.ablation`` works however pytest was started (the spawned workers of a grid
inherit the path)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
