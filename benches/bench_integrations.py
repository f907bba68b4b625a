"""What each SDK integration adds to a tool call, over a plain ``rt.call``.

All figures come from one run, on one SQLite file: a ``read`` tool with a no-op handler
(so every call runs and is logged; nothing is answered from the record), best of ROUNDS
rounds of CALLS calls, in µs per call. The ratio is against the plain call of the same
runtime kind (sync ``Runtime`` or ``AsyncRuntime``).

    PYTHONPATH=python python benches/bench_integrations.py
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from anthropic.types import Message as AnthropicMessage
from google.genai.types import GenerateContentResponse
from langchain.agents.middleware import ToolCallRequest
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool as lc_tool
from openai.types.chat import ChatCompletion
from pydantic_ai import RunContext
from pydantic_ai.models.test import TestModel
from pydantic_ai.toolsets import FunctionToolset
from pydantic_ai.usage import RunUsage

from dar import AsyncRuntime, Effect, Runtime, tool
from dar.integrations import anthropic as dar_anthropic
from dar.integrations import gemini as dar_gemini
from dar.integrations import langchain as dar_langchain
from dar.integrations import openai as dar_openai
from dar.integrations.pydantic_ai import DarToolset

ROUNDS = 5
CALLS = 300
ARGS = {"text": "hello"}


@tool(effect=Effect.READ)
def echo(text: str) -> str:
    """Say the text back."""
    return text


def best(fn: Callable[[], Any]) -> float:
    """µs per call of ``fn``, best of ROUNDS."""
    fn()  # warm caches: schemas, prepared statements
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(CALLS):
            fn()
        times.append((time.perf_counter() - start) / CALLS * 1e6)
    return min(times)


async def abest(fn: Callable[[], Awaitable[Any]]) -> float:
    await fn()
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(CALLS):
            await fn()
        times.append((time.perf_counter() - start) / CALLS * 1e6)
    return min(times)


def sync_rows(db: Path) -> list[tuple[str, float]]:
    rt = Runtime(f"sqlite:///{db}", tools=[echo])
    lc_echo = dar_langchain.tools(rt)[0]

    @lc_tool
    def agent_echo(text: str) -> str:
        """Say the text back."""
        return text

    middleware = dar_langchain.DarMiddleware(rt, effects={"agent_echo": "read"})
    request = ToolCallRequest(
        tool_call={"name": "agent_echo", "args": ARGS, "id": "c1", "type": "tool_call"},
        tool=agent_echo,
        state=None,
        runtime=None,  # type: ignore[arg-type]
    )

    def run_tool(req: ToolCallRequest) -> ToolMessage:
        content = agent_echo.invoke(req.tool_call["args"])
        return ToolMessage(content, tool_call_id=req.tool_call["id"])

    completion = ChatCompletion.model_validate(
        {
            "id": "c", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None, "tool_calls": [{
                    "id": "call_1", "type": "function",
                    "function": {"name": "echo", "arguments": '{"text": "hello"}'}}]}}],
        }
    )  # fmt: skip
    message = AnthropicMessage.model_validate(
        {
            "id": "m", "type": "message", "role": "assistant", "model": "m",
            "stop_reason": "tool_use", "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
            "content": [{"type": "tool_use", "id": "tu_1", "name": "echo", "input": ARGS}],
        }
    )  # fmt: skip
    gemini = GenerateContentResponse.model_validate(
        {"candidates": [{"content": {"role": "model", "parts": [
            {"function_call": {"name": "echo", "args": ARGS, "id": "fc_1"}}]}}]}
    )  # fmt: skip
    rows = [
        ("sync  rt.call", best(lambda: rt.call("echo", ARGS))),
        (
            "sync  OpenAI run_tool_calls (Chat Completion)",
            best(lambda: dar_openai.run_tool_calls(rt, completion)),
        ),
        (
            "sync  Anthropic run_tool_uses (Message)",
            best(lambda: dar_anthropic.run_tool_uses(rt, message)),
        ),
        (
            "sync  Gemini run_function_calls (response)",
            best(lambda: dar_gemini.run_function_calls(rt, gemini)),
        ),
        ("sync  LangChain tools(rt) .invoke", best(lambda: lc_echo.invoke(ARGS))),
        ("sync  LangChain tool .invoke, no dar", best(lambda: agent_echo.invoke(ARGS))),
        (
            "sync  LangChain DarMiddleware.wrap_tool_call",
            best(lambda: middleware.wrap_tool_call(request, run_tool)),
        ),
    ]
    rt.close()
    return rows


async def async_rows(db: Path) -> list[tuple[str, float]]:
    rt = AsyncRuntime(f"sqlite:///{db}", tools=[echo])
    ctx = RunContext(deps=None, model=TestModel(), usage=RunUsage(), conversation_id="bench")
    own = DarToolset(rt)
    own_tool = (await own.get_tools(ctx))["echo"]

    def agent_echo(text: str) -> str:
        return text

    functions = FunctionToolset([agent_echo])
    plain_tool = (await functions.get_tools(ctx))["agent_echo"]
    wrapped = DarToolset(rt, wrap=functions, effects={"agent_echo": "read"})
    wrapped_tool = (await wrapped.get_tools(ctx))["agent_echo"]
    lc_echo = dar_langchain.tools(rt)[0]
    rows = [
        ("async rt.call", await abest(lambda: rt.call("echo", ARGS))),
        (
            "async Pydantic AI DarToolset(rt).call_tool",
            await abest(lambda: own.call_tool("echo", dict(ARGS), ctx, own_tool)),
        ),
        (
            "async Pydantic AI FunctionToolset.call_tool, no dar",
            await abest(lambda: functions.call_tool("agent_echo", dict(ARGS), ctx, plain_tool)),
        ),
        (
            "async Pydantic AI DarToolset(wrap=...).call_tool",
            await abest(lambda: wrapped.call_tool("agent_echo", dict(ARGS), ctx, wrapped_tool)),
        ),
        ("async LangChain tools(rt) .ainvoke", await abest(lambda: lc_echo.ainvoke(ARGS))),
    ]
    await rt.close()
    return rows


def table(rows: list[tuple[str, float]]) -> None:
    base = rows[0][1]
    for name, us in rows:
        print(f"{name:<52} {us:>9.1f} µs   ×{us / base:.2f}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'call':<52} {'per call':>12}   vs the plain call   ({ROUNDS}×{CALLS} calls)")
        table(sync_rows(Path(tmp) / "sync.db"))
        table(asyncio.run(async_rows(Path(tmp) / "async.db")))


if __name__ == "__main__":
    main()
