"""The documentation as the tests read it: the README and every page of `docs/`, and the
fenced blocks in them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

#: The README and every page of the manual.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def name(page: Path) -> str:
    """A page as the test ids show it (``docs/agents.md``)."""
    return str(page.relative_to(ROOT))


def blocks(page: Path, language: str) -> list[str]:
    """The fenced blocks of ``language`` in ``page``, in order, each ending with a newline."""
    return [body for lang, body in FENCE.findall(page.read_text()) if lang == language]
