"""Every page the docs and the code point to exists, and so does every section they name.

Checked: Markdown links (``[text](path#anchor)``) in README.md and docs/, and the citations
the code and docs write as plain text (``docs/training.md, "The fix: ..."``): the file must
exist and, when a section is named, one of its headings must start with that name.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("aaren_rl", "aaren_policy", "envs", "agents", "eval", "deploy", "train")
CODE_DIRS += ("collect", "bench", "studies", "tests")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CITATION = re.compile(r"\bdocs/([\w/.-]+\.md)(?:(?:,|\s)\s*(?:\()?\"([^\"]+)\")?")
HEADING = re.compile(r"^#{1,6}\s+(.*)$", re.M)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def sources() -> list[Path]:
    out = [p for d in CODE_DIRS for p in sorted((ROOT / d).rglob("*.py"))]
    out += [p for d in CODE_DIRS for p in sorted((ROOT / d).rglob("*.md"))]
    out = [p for p in out if p != Path(__file__).resolve()]  # its own examples are not citations
    return out + pages() + [ROOT / "Makefile", ROOT / "pyproject.toml"]


def headings(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # no '#' comments of code
    return [" ".join(h.split()) for h in HEADING.findall(text)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.lower().replace("`", ""))
    return text.replace(" ", "-")


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    bad = []
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{page.relative_to(root)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in map(slug, headings(dest)):
            bad.append(f"{page.relative_to(root)}: {target} (no such heading)")
    return bad


def broken_citations(path: Path, root: Path = ROOT) -> list[str]:
    bad = []
    text = " ".join(path.read_text(errors="replace").split())  # citations wrap across lines
    text = text.replace('""" ', "").replace("# ", "")  # docstring and comment line breaks
    for page, section in CITATION.findall(text):
        dest = root / "docs" / page
        if not dest.exists():
            bad.append(f"{path.relative_to(root)}: docs/{page} (no such file)")
        elif section and not any(h.startswith(section.strip()) for h in headings(dest)):
            bad.append(f'{path.relative_to(root)}: docs/{page}, "{section}" (no such heading)')
    return bad


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_links_resolve(page: Path):
    assert not broken_links(page), "\n".join(broken_links(page))


def test_cited_pages_and_sections_exist():
    bad = [line for path in sources() for line in broken_citations(path)]
    assert not bad, "\n".join(bad)


def test_the_checkers_find_what_is_broken(tmp_path: Path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\n## The demo (`make demo`)\n\n[b](b.md) [x](a.md#nope)\n")
    (docs / "c.md").write_text("[a](a.md#the-demo-make-demo) [web](https://example.org)\n")
    assert broken_links(docs / "c.md", tmp_path) == []
    assert broken_links(docs / "a.md", tmp_path) == [
        "docs/a.md: b.md (no such file)",
        "docs/a.md: a.md#nope (no such heading)",
    ]
    src = tmp_path / "m.py"
    src.write_text('# see docs/a.md, "The demo"; docs/a.md ("Gone") and\n# docs/b.md\n')
    assert broken_citations(src, tmp_path) == [
        'm.py: docs/a.md, "Gone" (no such heading)',
        "m.py: docs/b.md (no such file)",
    ]
