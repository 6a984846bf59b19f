"""Every relative link and anchor in the README and the pages under ``docs/`` resolves.

The README keeps a summary of each topic and links into ``docs/`` for the rest (issue 25),
so a heading renamed or a section moved between pages would otherwise leave links that
lead nowhere, and nobody reads every page after every edit.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").rglob("*.md")])

#: Fenced blocks, which may hold ``#`` lines of their own, and inline code: their
#: brackets are code, not links.
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")
#: ``[label](target)`` and ``![alt](target)``; a label may wrap onto the next line.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6}) +(.+?) *#*$", re.M)


def prose(text: str) -> str:
    """``text`` without its code."""
    return CODE.sub("", FENCE.sub("", text))


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of ``page`` (lower case, punctuation
    dropped, spaces made hyphens; a repeated heading gets ``-1``, ``-2``, ...)."""
    seen: dict[str, int] = {}
    for match in HEADING.finditer(FENCE.sub("", page.read_text(encoding="utf-8"))):
        slug = re.sub(r"[^\w\- ]", "", match.group(2).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text(encoding="utf-8")))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.name}")
    assert not broken, broken


def test_every_page_under_docs_is_reached_from_the_readme() -> None:
    """A page nobody links to is a page nobody finds: following links from the README
    reaches every page under ``docs/``."""
    reached: set[Path] = set()
    todo = [(ROOT / "README.md").resolve()]
    while todo:
        page = todo.pop()
        if page in reached or page.suffix != ".md" or not page.exists():
            continue
        reached.add(page)
        for target in links(page):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target) and target.partition("#")[0]:
                todo.append((page.parent / target.partition("#")[0]).resolve())
    pages = (ROOT / "docs").rglob("*.md")
    orphans = [str(p.relative_to(ROOT)) for p in pages if p.resolve() not in reached]
    assert not orphans, orphans


def test_the_anchors_are_githubs(tmp_path: Path) -> None:
    """Backticks and commas dropped, a repeat numbered, a ``#`` line in code no heading."""
    page = tmp_path / "page.md"
    page.write_text(
        "# Behind a proxy, under a `path` prefix\n\n## Counts\n\n## Counts\n\n"
        "```python\n# not a heading\n```\n",
        encoding="utf-8",
    )
    assert anchors(page) == {"behind-a-proxy-under-a-path-prefix", "counts", "counts-1"}


#: Paths of test modules as the docs name them (``tests/db/test_engines.py``).
TEST_PATH = re.compile(r"\btests/[\w/]+\.py\b")


@pytest.mark.parametrize(
    "page", [p for p in PAGES if p.name != "CHANGELOG.md"], ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_test_module_a_page_names_exists(page: Path) -> None:
    """The tests live in ``tests/<layer>/``: a page pointing at a test module that moved
    sends its reader nowhere (the CHANGELOG keeps the paths of its own time)."""
    named = set(TEST_PATH.findall(page.read_text(encoding="utf-8")))
    assert sorted(p for p in named if not (ROOT / p).exists()) == []
