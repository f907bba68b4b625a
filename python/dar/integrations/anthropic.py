"""Anthropic Messages: a turn's ``tool_use`` blocks in, the ``tool_result`` message out.

Anthropic carries an error flag on each tool result, so a refusal, a failure or an unknown
tool reaches the model marked ``is_error`` with the runtime's wording of why. The user's
loop stays theirs: call the API, and while ``stop_reason == "tool_use"`` append the
assistant turn and what `run_tool_uses` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dar.integrations import require
from dar.integrations._turn import Call, arun_calls, run_calls
from dar.reply import ModelReply
from dar.runtime.aio import AsyncRuntime
from dar.runtime.sync import Runtime

_types = require("anthropic.types", "anthropic")
_beta = require("anthropic.types.beta", "anthropic")


def tools(rt: Runtime | AsyncRuntime) -> list[dict[str, Any]]:
    """The runtime's tools, as ``tools=`` for ``messages.create``."""
    return rt.tool_schemas("anthropic")


def run_tool_uses(
    rt: Runtime, message: Any, *, correlation_id: str | None = None
) -> dict[str, Any]:
    """Run every ``tool_use`` block of ``message`` (a ``Message``) and return the user
    message holding one ``tool_result`` per block, in the same order."""
    ids, calls = _read(message)
    return _reply(ids, run_calls(rt, calls, correlation_id))


async def arun_tool_uses(
    art: AsyncRuntime, message: Any, *, correlation_id: str | None = None
) -> dict[str, Any]:
    """``run_tool_uses`` on an ``AsyncRuntime``: the turn's calls run concurrently."""
    ids, calls = _read(message)
    return _reply(ids, await arun_calls(art, calls, correlation_id))


def _read(message: Any) -> tuple[list[str], list[Call]]:
    if not isinstance(message, (_types.Message, _beta.BetaMessage)):
        raise TypeError(f"expected an anthropic Message, not {type(message).__name__}")
    uses = [b for b in message.content if b.type == "tool_use"]
    return [u.id for u in uses], [(u.name, u.input) for u in uses]


def _reply(ids: Sequence[str], replies: Sequence[ModelReply]) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": i, "content": r.text, "is_error": r.is_error}
            for i, r in zip(ids, replies, strict=True)
        ],
    }
