"""LangChain: dar's tools as LangChain tools, and a middleware for any agent's tools.

``tools(rt)`` turns the runtime's registered tools into ``StructuredTool``s (the schema is
``Tool.input_schema()``, so dar, not LangChain, validates the arguments and logs misfits).
``DarMiddleware(rt, effects=...)`` routes every tool call of a ``create_agent`` agent
through dar: each tool the agent owns is registered in ``rt`` as a stand-in whose handler
runs the agent's own tool call, so rules, idempotency and the log apply to it too.

A refusal or failure is a ``ToolMessage`` with ``status="error"`` that the model reads; the
run goes on. The session is the explicit ``correlation_id``, else ``dar.session()``, else
the LangGraph ``thread_id``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from dar.integrations import require

require("langchain.agents", "langchain")

from langchain.agents.middleware import AgentMiddleware, ToolCallRequest  # noqa: E402
from langchain_core.messages import ToolMessage  # noqa: E402
from langchain_core.runnables import RunnableConfig  # noqa: E402
from langchain_core.tools import BaseTool, StructuredTool, ToolException  # noqa: E402

from dar.errors import ConfigurationError  # noqa: E402
from dar.integrations._forward import (  # noqa: E402
    EffectMap,
    correlation,
    done_invoking,
    effects_of,
    invoking,
    is_stand_in,
    stand_in,
)
from dar.records import Result  # noqa: E402
from dar.runtime.aio import AsyncRuntime  # noqa: E402
from dar.runtime.sync import Runtime  # noqa: E402
from dar.tools import Tool  # noqa: E402

__all__ = ["DarMiddleware", "tools"]

#: Marks the tools ``tools()`` built: they go through dar already, so the middleware lets
#: them pass.
MARK = "dar"

Reply = ToolMessage | Any  # a ToolMessage, or a LangGraph Command a tool returned


def tools(rt: Runtime | AsyncRuntime, *, correlation_id: str | None = None) -> list[BaseTool]:
    """The runtime's registered tools as LangChain tools: ``create_agent(model, tools(rt))``."""
    return [_structured(rt, t, correlation_id) for t in rt.tools if not is_stand_in(t)]


def _structured(rt: Runtime | AsyncRuntime, tool: Tool[Any], explicit: str | None) -> BaseTool:
    schema = tool.input_schema()
    schema.pop("description", None)  # the tool's description goes beside it
    name = tool.name

    # The config is found by its type, so the parameter's name cannot meet an argument's.
    def run(dar_config: RunnableConfig, **arguments: Any) -> str:
        cid = correlation(explicit, thread_id(dar_config))
        assert isinstance(rt, Runtime)
        return _content(rt.call(name, arguments, correlation_id=cid))

    async def arun(dar_config: RunnableConfig, **arguments: Any) -> str:
        cid = correlation(explicit, thread_id(dar_config))
        assert isinstance(rt, AsyncRuntime)
        return _content(await rt.call(name, arguments, correlation_id=cid))

    sync = isinstance(rt, Runtime)
    return StructuredTool(
        name=name,
        description=tool.summary,
        args_schema=schema,
        func=run if sync else None,
        coroutine=None if sync else arun,
        handle_tool_error=True,
        metadata={MARK: True},
    )


def _content(result: Result) -> str:
    reply = result.for_model()
    if reply.is_error:
        raise ToolException(reply.text)  # handled by the tool: a ToolMessage, status="error"
    return reply.text


def thread_id(config: Any) -> str | None:
    """LangGraph's conversation identity, when the call runs in a graph with one."""
    found = ((config or {}).get("configurable") or {}).get("thread_id")
    return None if found is None else str(found)


class DarMiddleware(AgentMiddleware):
    """Every tool call of the agent through ``rt``:
    ``create_agent(model, tools, middleware=[DarMiddleware(rt, effects={...})])``.

    ``effects`` classifies the agent's tools by name or glob (``{"ship_*":
    "mutate-external"}``); a tool it does not name is ``irreversible``: refused unless a
    rule applies to it. Tools made by ``tools(rt)`` pass through (they call dar already).
    """

    def __init__(
        self,
        rt: Runtime | AsyncRuntime,
        *,
        effects: EffectMap | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__()
        self.rt = rt
        self.effects = effects_of(effects)
        self.correlation_id = correlation_id

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], Reply]
    ) -> Reply:
        rt = self.rt
        if not isinstance(rt, Runtime):
            raise ConfigurationError("an AsyncRuntime serves ainvoke/astream; use Runtime here")
        early = self._early(request)
        if early is not None:
            return handler(request) if early is PASS else early
        name, args, cid = self._call(request)
        token = invoking(lambda: _recorded(handler(request)))
        try:
            result = rt.call(name, args, correlation_id=cid)
        finally:
            done_invoking(token)
        return _message(request, result)

    async def awrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], Awaitable[Reply]]
    ) -> Reply:
        early = self._early(request)
        if early is not None:
            return await handler(request) if early is PASS else early
        name, args, cid = self._call(request)
        token = invoking(_forward(self.rt, request, handler))
        try:
            if isinstance(self.rt, AsyncRuntime):
                result = await self.rt.call(name, args, correlation_id=cid)
            else:  # a sync runtime blocks: in a thread, so the turn's other calls go on
                result = await asyncio.to_thread(self.rt.call, name, args, correlation_id=cid)
        finally:
            done_invoking(token)
        return _message(request, result)

    def _call(self, request: ToolCallRequest) -> tuple[str, Any, str | None]:
        call = request.tool_call
        config = getattr(request.runtime, "config", None)
        return call["name"], call["args"], correlation(self.correlation_id, thread_id(config))

    def _early(self, request: ToolCallRequest) -> ToolMessage | object | None:
        """What answers the call before dar: ``PASS`` (the framework runs it as is), a
        refusal, or None when it goes to ``rt.call`` (through a stand-in, or as an unknown
        name that dar refuses and logs)."""
        tool = request.tool
        if tool is None:
            # A name the runtime knows but the agent was not given must not run: the
            # framework answers it. Any other name dar refuses, and logs.
            known = any(t.name == request.tool_call["name"] for t in self.rt.tools)
            return PASS if known else None
        if (tool.metadata or {}).get(MARK):
            return PASS
        made = stand_in(self.rt, tool.name, self.effects)
        if isinstance(made, str):
            return ToolMessage(
                made, tool_call_id=request.tool_call["id"], name=tool.name, status="error"
            )
        return None


#: The framework runs the call as it would without dar.
PASS = object()


def _forward(
    rt: Runtime | AsyncRuntime,
    request: ToolCallRequest,
    handler: Callable[[ToolCallRequest], Awaitable[Reply]],
) -> Callable[[], Any]:
    """The agent's own async tool call, as the stand-in runs it: awaited by an
    AsyncRuntime; on a sync runtime (whose handler runs in a worker thread) run on the
    agent's event loop and waited for."""

    async def call() -> Any:
        return _recorded(await handler(request))

    if isinstance(rt, AsyncRuntime):
        return call
    loop = asyncio.get_running_loop()
    return lambda: asyncio.run_coroutine_threadsafe(call(), loop).result()


class ToolError(Exception):
    """The agent's tool answered with an error: a failure dar records (and may retry)."""


def _recorded(reply: Reply) -> Any:
    """What dar records of the agent's tool reply: its content."""
    if not isinstance(reply, ToolMessage):
        raise ToolError(f"the tool returned a {type(reply).__name__}, which dar cannot record")
    if reply.status == "error":
        raise ToolError(str(reply.content))
    return reply.content


def _message(request: ToolCallRequest, result: Result) -> ToolMessage:
    reply = result.for_model()
    return ToolMessage(
        reply.text,
        tool_call_id=request.tool_call["id"],
        name=request.tool_call["name"],
        status="error" if reply.is_error else "success",
    )
