"""The rooms import one way down (docs/design.md, "Layering"); checked by reading the imports.

Every product module is parsed with ``ast``; module-level *and* function-level imports count
(a function-level import that runs up the layers is still a cycle, only a hidden one).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("aaren_policy", "envs", "agents", "eval", "deploy", "train", "collect", "bench")
BASE = (
    "errors",
    "fileio",
    "cli",
    "tracking",
    "untrusted",
    "folders",
    "hdf5_checks",
)  # aaren_rl/*.py: below every room

# room -> rooms it must never import (docs/design.md)
FORBIDDEN: dict[str, set[str]] = {
    "aaren_policy": set(ROOMS) - {"aaren_policy"},
    "envs": {"aaren_policy", "agents", "train", "eval", "deploy", "bench", "collect"},
    "agents": {"envs", "train", "eval", "deploy", "bench", "collect"},
    "eval": {"train", "bench", "collect", "deploy"},
    "deploy": {"train", "bench", "collect", "eval"},
    "train": {"bench", "collect", "deploy"},
    "collect": {"aaren_policy", "agents", "train", "deploy", "bench"},
    "bench": set(),
    "base": set(ROOMS),
}
# Trees that run in their own virtual environment and cannot import aaren_rl at all.
OUTSIDE = ("bench/peer/d3rlpy_dt.py",)
# One-off research scripts (studies/, not installed): above every room, imported by none.
STUDIES = sorted((ROOT / "studies").rglob("*.py"))


def product_modules() -> list[tuple[str, Path]]:
    """(room, path) of every product module; ``base`` for aaren_rl/*.py."""
    out = [("base", p) for p in sorted((ROOT / "aaren_rl").glob("*.py"))]
    for room in ROOMS:
        out += [(room, p) for p in sorted((ROOT / room).rglob("*.py"))]
    return [(r, p) for r, p in out if str(p.relative_to(ROOT)) not in OUTSIDE]


def imported_names(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module name) of every import in ``path``, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append((node.lineno, node.module))
            # `from aaren_rl import envs` imports the room envs
            if node.module == "aaren_rl":
                names += [(node.lineno, f"aaren_rl.{a.name}") for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.append((node.lineno, "." * node.level + (node.module or "")))
    return names


def room_of(name: str) -> str | None:
    """The room a dotted ``aaren_rl.*`` name belongs to ('base' for aaren_rl.errors...)."""
    parts = name.split(".")
    if parts[0] != "aaren_rl" or len(parts) < 2:
        return None
    if parts[1] in ROOMS:
        return parts[1]
    return "base" if parts[1] in BASE else None


MODULES = product_modules()


def test_there_are_modules_to_check():
    rooms = {r for r, _ in MODULES}
    assert rooms == {*ROOMS, "base"}, rooms
    assert len(MODULES) > 30


@pytest.mark.parametrize(
    ("room", "path"), MODULES, ids=[str(p.relative_to(ROOT)) for _, p in MODULES]
)
def test_imports_run_one_way_down(room: str, path: Path):
    bad = []
    for line, name in imported_names(path):
        target = room_of(name)
        if target in FORBIDDEN[room]:
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {name} ({room} -> {target})")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("room", "path"), MODULES, ids=[str(p.relative_to(ROOT)) for _, p in MODULES]
)
def test_only_the_aaren_rl_import_root(room: str, path: Path):
    """No bare ``import envs`` / ``from train import ...``: only ``aaren_rl.<room>``; no
    relative imports either (one spelling of every name)."""
    bad = []
    for line, name in imported_names(path):
        head = name.split(".")[0]
        if head in ROOMS or name.startswith("."):
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {name!r}")
    assert not bad, "\n".join(bad)


def test_the_product_never_imports_the_studies():
    """studies/ is not installed: a product module that imported it would fail for users."""
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for _, path in MODULES
        for line, name in imported_names(path)
        if name.split(".")[0] == "studies"
    ]
    assert STUDIES and not bad, "\n".join(bad)


@pytest.mark.parametrize("path", STUDIES, ids=[str(p.relative_to(ROOT)) for p in STUDIES])
def test_studies_import_the_product_by_its_one_root(path: Path):
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {name!r}"
        for line, name in imported_names(path)
        if name.split(".")[0] in ROOMS or name.startswith(".")
    ]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_function_level_imports(tmp_path: Path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from aaren_rl.train.loop import x\n    import envs\n")
    assert imported_names(src) == [(2, "aaren_rl.train.loop"), (3, "envs")]
    assert room_of("aaren_rl.train.loop") == "train"
    assert room_of("aaren_rl.errors") == "base"
    assert room_of("numpy") is None


OUTSIDE_REFERENCE = re.compile(
    r"DESIGN\.md|STYLE\.md|\.\./shared|/work/shared|\bissue \d|the issue\b"
)


def test_no_citation_of_files_outside_the_repo():
    """Code and docs cite docs/*.md, never files outside the repository or a tracker."""
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "tests").rglob("*.py")]
    files += [p for _, p in MODULES] + [ROOT / p for p in OUTSIDE] + STUDIES
    files += list((ROOT / "bench").rglob("*.md"))
    bad = []
    for path in files:
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE_REFERENCE.search(line) and path.name != "test_layering.py":
                bad.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()[:100]}")
    assert not bad, "\n".join(bad)
