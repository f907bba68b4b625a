"""OpenAI Agents SDK: the runtime's tools as the SDK's ``FunctionTool`` objects.

The Agents SDK runs the loop itself, so the integration is a tool list: each tool hands the
model's JSON arguments to ``rt.call`` unparsed (the runtime validates and logs them) and
returns the text the model should read. The SDK runs a turn's tool calls concurrently;
the runtime makes identical ones execute once. A sync ``Runtime`` is called in a worker
thread so the SDK's event loop never blocks on the database or the handler.

A call to a tool the agent does not have never reaches these tools: the SDK handles it
(``RunConfig(tool_not_found_behavior="return_error_to_model")`` tells the model).
"""

from __future__ import annotations

import asyncio
from typing import Any

from dar.context import current_session
from dar.integrations import require
from dar.records import Result
from dar.runtime.aio import AsyncRuntime
from dar.runtime.sync import Runtime

_agents = require("agents", "openai-agents", "openai-agents")


def function_tools(rt: Runtime | AsyncRuntime, *, correlation_id: str | None = None) -> list[Any]:
    """One ``agents.FunctionTool`` per registered tool, for ``Agent(tools=...)``.

    A call's correlation id is ``correlation_id``, else the ``dar.session()`` around the
    run, else the run's ``RunConfig.group_id`` (the SDK's conversation id for traces).
    """
    return [_function_tool(rt, s, correlation_id) for s in rt.tool_schemas("openai-responses")]


def _function_tool(rt: Runtime | AsyncRuntime, schema: dict[str, Any], given: str | None) -> Any:
    name: str = schema["name"]

    async def invoke(ctx: Any, arguments: str) -> str:
        result = await _call(rt, name, arguments, _correlation(ctx, given))
        return result.for_model().text

    return _agents.FunctionTool(
        name=name,
        description=schema["description"],
        params_json_schema=schema["parameters"],
        on_invoke_tool=invoke,
        # Strict only where the schema already fits it, as the runtime describes it; the
        # SDK would otherwise rewrite it and the model would be told a different schema.
        strict_json_schema=schema["strict"],
    )


async def _call(
    rt: Runtime | AsyncRuntime, name: str, arguments: str, correlation_id: str | None
) -> Result:
    if isinstance(rt, AsyncRuntime):
        return await rt.call(name, arguments, correlation_id=correlation_id)
    # to_thread copies the context, so dar.session() and a parent call still apply.
    return await asyncio.to_thread(rt.call, name, arguments, correlation_id=correlation_id)


def _correlation(ctx: Any, given: str | None) -> str | None:
    if given is not None:
        return given
    session = current_session.get()
    if session is not None:
        return session
    group_id = getattr(getattr(ctx, "run_config", None), "group_id", None)
    return group_id if isinstance(group_id, str) and group_id else None
