"""No product function is over 120 lines (docs/style.md): long functions hide their steps.

The studies (studies/, not installed) are held to the same rule."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = (
    "aaren_rl",
    "aaren_policy",
    "envs",
    "agents",
    "eval",
    "deploy",
    "train",
    "collect",
    "bench",
    "studies",
)
MAX_LINES = 120


def long_functions(path: Path, limit: int = MAX_LINES, root: Path = ROOT) -> list[str]:
    """``file:line name (N lines)`` for every function or method of ``path`` over ``limit``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            n = node.end_lineno - first + 1
            if n > limit:
                out.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({n} lines)")
    return out


FILES = sorted(p for room in ROOMS for p in (ROOT / room).rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_no_function_over_120_lines(path: Path):
    assert not long_functions(path), long_functions(path)


def test_the_checker_counts_lines(tmp_path: Path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "long.py").write_text(f"@staticmethod\ndef f():\n{body}\n")
    (tmp_path / "short.py").write_text("def g():\n    return 1\n")
    assert long_functions(tmp_path / "long.py", root=tmp_path) == ["long.py:2 f (122 lines)"]
    assert long_functions(tmp_path / "short.py", root=tmp_path) == []
