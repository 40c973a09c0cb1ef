"""Every pointer the surface gives (--help, docstrings, docs, the example plugin) resolves: a
named README or docs page exists, and a section named beside it is one of its headings."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    *(
        p
        for d in ("benchmark", "core", "victims", "attacks", "defenses", "leaderboard", "sapabench")
        for p in (ROOT / d).rglob("*.py")
    ),
    *(ROOT / "docs").rglob("*.md"),
    ROOT / "README.md",
    ROOT / "examples" / "sapabench-example-plugin" / "README.md",
]
# `docs/X.md, "Heading"`, `docs/X.md ("Heading")`, `README, "Heading"`, `README: Heading)`
POINTER = re.compile(r'(README(?:\.md)?|docs/[\w/.-]+\.md)(?:,|:)?\s*\(?\s*"([^"\n]+)"(?:\s+and\s+"([^"\n]+)")?')
LOOSE = re.compile(r"(?:see|in) (?:the )?(?:main )?README[:,]? ([A-Z][\w ,-]+)")


def _headings(page: Path) -> set[str]:
    return {m.group(1).strip().strip("`") for m in re.finditer(r"^#+\s+(.+)$", page.read_text(), re.M)}


def _pointers():
    for source in SOURCES:
        text = source.read_text()
        for m in POINTER.finditer(text):
            name = "README.md" if m.group(1).startswith("README") else m.group(1)
            for heading in filter(None, (m.group(2), m.group(3))):
                yield source.relative_to(ROOT), name, " ".join(heading.split())
        for m in LOOSE.finditer(text):
            yield source.relative_to(ROOT), "README.md", m.group(1).strip()


@pytest.mark.parametrize(("source", "page", "heading"), sorted(set(_pointers()), key=str))
def test_every_pointer_names_a_page_and_a_heading_that_exist(source, page, heading):
    target = ROOT / page
    assert target.is_file(), f"{source} points to {page}, which does not exist"
    headings = {" ".join(h.split()) for h in _headings(target)}
    assert heading in headings, f"{source} points to {page}, {heading!r}: not one of its headings"


def test_pointers_are_found_at_all():
    found = list(_pointers())
    assert len(found) >= 5 and any(page == "docs/performance.md" for _, page, _ in found)
