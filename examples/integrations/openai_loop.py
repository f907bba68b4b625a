"""A Chat Completions agent loop whose every tool call goes through dar.

    OPENAI_API_KEY=... python examples/integrations/openai_loop.py

The client reads OPENAI_API_KEY and OPENAI_BASE_URL from the environment; OPENAI_MODEL
picks the model. A refused, failed or mistyped call is just another tool result: the loop
has no error handling of its own. Run it twice: the second run places no order again.
"""

from __future__ import annotations

import os
from typing import Any

import openai
from shop import DATABASE, REQUEST, RULES, TOOLS

from dar import Runtime
from dar.integrations import openai as dar_openai

MODEL = os.environ.get("OPENAI_MODEL", "gpt-4.1-mini")


def main() -> None:
    client = openai.OpenAI()
    rt = Runtime(DATABASE, tools=TOOLS, rules=RULES)
    messages: list[Any] = [{"role": "user", "content": REQUEST}]
    while True:
        completion = client.chat.completions.create(
            model=MODEL, messages=messages, tools=dar_openai.tools(rt)
        )
        replies = dar_openai.run_tool_calls(rt, completion, correlation_id="conv-1")
        if not replies:
            break
        messages += [completion.choices[0].message, *replies]
    print(completion.choices[0].message.content)
    rt.close()


if __name__ == "__main__":
    main()
