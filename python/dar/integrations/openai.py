"""OpenAI Chat Completions and Responses: the model's tool calls in, the messages to send back
out.

The user keeps their own loop and their own client; this module only reads the tool calls
off the SDK's objects and turns each `Result` into the message the API expects next. The
arguments go to the runtime as the JSON text the model wrote, so broken JSON or a wrong type
is refused and logged like any other call, and the model reads why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from dar.integrations import require
from dar.integrations._turn import Call, arun_calls, run_calls
from dar.reply import ModelReply
from dar.runtime.aio import AsyncRuntime
from dar.runtime.sync import Runtime

_chat = require("openai.types.chat", "openai")
_responses = require("openai.types.responses", "openai")

Api = Literal["chat", "responses"]


def tools(rt: Runtime | AsyncRuntime, api: Api = "chat") -> list[dict[str, Any]]:
    """The runtime's tools, as ``tools=`` for ``chat.completions.create`` (``api="chat"``)
    or ``responses.create`` (``api="responses"``)."""
    if api not in ("chat", "responses"):
        raise ValueError(f"api must be 'chat' or 'responses', not {api!r}")
    return rt.tool_schemas(f"openai-{api}")


def run_tool_calls(
    rt: Runtime, turn: Any, *, correlation_id: str | None = None
) -> list[dict[str, Any]]:
    """Run every tool call of a model turn and return what to append to the conversation.

    ``turn`` is a ``ChatCompletion`` or its ``ChatCompletionMessage`` (the result is one
    ``{"role": "tool", ...}`` message per call), or a Responses ``Response`` (one
    ``function_call_output`` item per call). An empty list means the model called nothing.
    """
    api, ids, calls = _read(turn)
    return _replies(api, ids, run_calls(rt, calls, correlation_id))


async def arun_tool_calls(
    art: AsyncRuntime, turn: Any, *, correlation_id: str | None = None
) -> list[dict[str, Any]]:
    """``run_tool_calls`` on an ``AsyncRuntime``: the turn's calls run concurrently."""
    api, ids, calls = _read(turn)
    return _replies(api, ids, await arun_calls(art, calls, correlation_id))


def _read(turn: Any) -> tuple[Api, list[str], list[Call]]:
    """The API the turn came from, its call ids and its calls, in the model's order."""
    if isinstance(turn, _responses.Response):
        items = [i for i in turn.output if i.type == "function_call"]
        return "responses", [i.call_id for i in items], [(i.name, i.arguments) for i in items]
    if isinstance(turn, _chat.ChatCompletion):
        turn = turn.choices[0].message  # the one choice a tool loop continues
    if isinstance(turn, _chat.ChatCompletionMessage):
        tool_calls = turn.tool_calls or []
        return "chat", [c.id for c in tool_calls], [_chat_call(c) for c in tool_calls]
    raise TypeError(
        "expected a ChatCompletion, a ChatCompletionMessage or a Responses Response, "
        f"not {type(turn).__name__}"
    )


def _chat_call(call: Any) -> Call:
    # A custom tool's free-form input goes as it is; the runtime refuses what is not JSON.
    if call.type == "custom":
        return call.custom.name, call.custom.input
    return call.function.name, call.function.arguments


def _replies(api: Api, ids: Sequence[str], replies: Sequence[ModelReply]) -> list[dict[str, Any]]:
    # Neither API has an error flag for a tool result: the text says it was refused or failed.
    if api == "responses":
        return [
            {"type": "function_call_output", "call_id": i, "output": r.text}
            for i, r in zip(ids, replies, strict=True)
        ]
    return [
        {"role": "tool", "tool_call_id": i, "content": r.text}
        for i, r in zip(ids, replies, strict=True)
    ]
