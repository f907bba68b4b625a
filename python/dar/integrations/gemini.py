"""Google Gen AI (Gemini): a response's function calls in, the function responses out.

Gemini has no error flag on a function response; its documented convention is the
``"output"`` key for a result and the ``"error"`` key for what went wrong, so a refusal or
failure goes under ``"error"``. The answer is a ``Content`` with role ``"user"``, the role
the SDK itself gives function responses in its automatic function calling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dar.integrations import require
from dar.integrations._turn import Call, arun_calls, run_calls
from dar.reply import ModelReply
from dar.runtime.aio import AsyncRuntime
from dar.runtime.sync import Runtime

_types = require("google.genai.types", "gemini", "google-genai")


def tools(rt: Runtime | AsyncRuntime) -> list[Any]:
    """The runtime's tools as ``types.Tool`` objects, for ``GenerateContentConfig(tools=...)``."""
    return [_types.Tool.model_validate(t) for t in rt.tool_schemas("gemini")]


def run_function_calls(rt: Runtime, response: Any, *, correlation_id: str | None = None) -> Any:
    """Run every function call of ``response`` (a ``GenerateContentResponse``) and return the
    ``types.Content`` to append to the contents: one function response per call, in order.
    Check ``response.function_calls`` first: without calls the turn is the model's answer."""
    ids, calls = _read(response)
    return _content(ids, calls, run_calls(rt, calls, correlation_id))


async def arun_function_calls(
    art: AsyncRuntime, response: Any, *, correlation_id: str | None = None
) -> Any:
    """``run_function_calls`` on an ``AsyncRuntime``: the turn's calls run concurrently."""
    ids, calls = _read(response)
    return _content(ids, calls, await arun_calls(art, calls, correlation_id))


def _read(response: Any) -> tuple[list[str | None], list[Call]]:
    if not isinstance(response, _types.GenerateContentResponse):
        raise TypeError(f"expected a GenerateContentResponse, not {type(response).__name__}")
    fcs = response.function_calls or []
    return [fc.id for fc in fcs], [(fc.name, fc.args) for fc in fcs]


def _content(
    ids: Sequence[str | None], calls: Sequence[Call], replies: Sequence[ModelReply]
) -> Any:
    parts = [
        _types.Part(
            function_response=_types.FunctionResponse(
                id=i,  # Gemini matches a response to its call by id where it sent one
                name=name,
                response={"error" if r.is_error else "output": r.text},
            )
        )
        for i, (name, _), r in zip(ids, calls, replies, strict=True)
    ]
    return _types.Content(role="user", parts=parts)
