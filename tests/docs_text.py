"""The documentation as the tests read it: the README and every page of the docs/ site."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def docs_text() -> str:
    """README.md and docs/**/*.md, one after the other (a phrase may live on any page)."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    return "\n\n".join(p.read_text(encoding="utf-8") for p in pages if "_build" not in p.parts)


def section(heading: str) -> str:
    """From the Markdown heading whose text is `heading` to the next heading of its level or above."""
    text = docs_text()
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, flags=re.M)
    if match is None:
        raise AssertionError(f"no heading {heading!r} in the README or docs/")
    level = len(match.group(1))
    rest = text[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, flags=re.M)
    return text[match.start() : match.end() + (end.start() if end else len(rest))]
