"""The README's integration snippets are excerpts of examples the tests run, so they work."""

from __future__ import annotations

import re

from tests.support.shop import ROOT

#: Each SDK's README section, and the example its snippets are cut from (None: any).
SECTIONS = {
    "### OpenAI (Chat Completions and Responses)": None,
    "### Anthropic": None,
    "### Gemini": None,
    "### OpenAI Agents SDK": None,
    "### Pydantic AI": "pydantic_ai_loop.py",
    "### LangChain": "langchain_loop.py",
}


def section(readme: str, heading: str) -> str:
    start = readme.index(heading + "\n") + len(heading)
    after = re.search(r"^#{1,3} ", readme[start:], re.MULTILINE)
    return readme[start : start + after.start() if after else None]


def test_every_snippet_is_verbatim_in_an_example() -> None:
    readme = (ROOT / "README.md").read_text()
    examples = [p.read_text() for p in (ROOT / "examples").rglob("*.py")]
    for heading, example in SECTIONS.items():
        blocks = re.findall(r"```python\n(.*?)```", section(readme, heading), re.DOTALL)
        assert blocks, f"{heading} has no python block"
        own = (ROOT / "examples" / "integrations" / example).read_text() if example else None
        for block in blocks:
            assert any(block in text for text in examples), f"{heading}: not in examples/\n{block}"
            assert own is None or block in own, f"{heading}: not in {example}"
