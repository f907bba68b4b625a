"""A Gemini (google-genai) agent loop whose every function call goes through dar.

    GEMINI_API_KEY=... python examples/integrations/gemini_loop.py

The client reads GEMINI_API_KEY (or GOOGLE_API_KEY) from the environment, and the SDK
itself reads GOOGLE_GEMINI_BASE_URL to talk to another endpoint (a proxy, or the test
server). GEMINI_MODEL picks the model. A refused or failed call goes back as a function
response under "error", so the loop has no error handling of its own.
"""

from __future__ import annotations

import os
from typing import Any

from google import genai
from google.genai import types
from shop import DATABASE, REQUEST, RULES, TOOLS

from dar import Runtime
from dar.integrations import gemini as dar_gemini

MODEL = os.environ.get("GEMINI_MODEL", "gemini-2.5-flash")


def main() -> None:
    client = genai.Client()
    rt = Runtime(DATABASE, tools=TOOLS, rules=RULES)
    config = types.GenerateContentConfig(tools=dar_gemini.tools(rt))
    contents: list[Any] = [types.Content(role="user", parts=[types.Part(text=REQUEST)])]
    while True:
        response = client.models.generate_content(model=MODEL, contents=contents, config=config)
        if not response.function_calls:
            break
        answers = dar_gemini.run_function_calls(rt, response, correlation_id="conv-1")
        contents += [response.candidates[0].content, answers]
    print(response.text)
    rt.close()


if __name__ == "__main__":
    main()
