"""The README's integration snippets are excerpts of examples the tests run, so they work."""

from __future__ import annotations

import re

from .shop import ROOT

SECTIONS = (
    "### OpenAI (Chat Completions and Responses)",
    "### Anthropic",
    "### Gemini",
    "### OpenAI Agents SDK",
)


def section(readme: str, heading: str) -> str:
    start = readme.index(heading + "\n") + len(heading)
    after = re.search(r"^#{1,3} ", readme[start:], re.MULTILINE)
    return readme[start : start + after.start() if after else None]


def test_every_snippet_is_verbatim_in_an_example() -> None:
    readme = (ROOT / "README.md").read_text()
    examples = [p.read_text() for p in (ROOT / "examples").rglob("*.py")]
    for heading in SECTIONS:
        blocks = re.findall(r"```python\n(.*?)```", section(readme, heading), re.DOTALL)
        assert blocks, f"{heading} has no python block"
        for block in blocks:
            assert any(block in text for text in examples), f"{heading}: not in examples/\n{block}"
