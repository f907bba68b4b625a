"""The SDK snippets in docs/agents.md are excerpts of examples the tests run, so they work.
(The page was the README's "Use it from an agent" section; tests/test_examples.py checks that
every Python block of every page has a copy under examples/.)"""

from __future__ import annotations

import re

from tests.support.shop import ROOT

PAGE = ROOT / "docs" / "agents.md"

#: Each SDK's section of the page, and the example its snippets are cut from (None: any).
SECTIONS = {
    "### OpenAI (Chat Completions and Responses)": "openai_loop.py",
    "### Anthropic": "anthropic_loop.py",
    "### Gemini": "gemini_loop.py",
    "### OpenAI Agents SDK": "openai_agents_loop.py",
    "### Pydantic AI": "pydantic_ai_loop.py",
    "### LangChain": "langchain_loop.py",
    "### LangChain: approvals through its human-in-the-loop": "langchain_approval.py",
}


def section(page: str, heading: str) -> str:
    start = page.index(heading + "\n") + len(heading)
    after = re.search(r"^#{1,3} ", page[start:], re.MULTILINE)
    return page[start : start + after.start() if after else None]


def test_every_snippet_is_verbatim_in_its_example() -> None:
    page = PAGE.read_text()
    for heading, example in SECTIONS.items():
        blocks = re.findall(r"```python\n(.*?)```", section(page, heading), re.DOTALL)
        assert blocks, f"{heading} has no python block"
        own = (ROOT / "examples" / "integrations" / example).read_text()
        for block in blocks:
            assert block in own, f"{heading}: not in examples/integrations/{example}\n{block}"
