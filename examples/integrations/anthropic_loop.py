"""An Anthropic Messages agent loop whose every tool call goes through dar.

    ANTHROPIC_API_KEY=... python examples/integrations/anthropic_loop.py

The client reads ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL from the environment;
ANTHROPIC_MODEL picks the model. A refused or failed call reaches the model as a
tool_result with is_error set, so the loop has no error handling of its own.
"""

from __future__ import annotations

import os
from typing import Any

import anthropic
from shop import DATABASE, REQUEST, RULES, TOOLS

from dar import Runtime
from dar.integrations import anthropic as dar_anthropic

MODEL = os.environ.get("ANTHROPIC_MODEL", "claude-sonnet-4-5")


def main() -> None:
    client = anthropic.Anthropic()
    rt = Runtime(DATABASE, tools=TOOLS, rules=RULES)
    messages: list[Any] = [{"role": "user", "content": REQUEST}]
    while True:
        message = client.messages.create(
            model=MODEL, max_tokens=1024, messages=messages, tools=dar_anthropic.tools(rt)
        )
        if message.stop_reason != "tool_use":
            break
        results = dar_anthropic.run_tool_uses(rt, message, correlation_id="conv-1")
        messages += [{"role": "assistant", "content": message.content}, results]
    print("".join(block.text for block in message.content if block.type == "text"))
    rt.close()


if __name__ == "__main__":
    main()
