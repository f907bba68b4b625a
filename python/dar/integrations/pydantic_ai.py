"""Pydantic AI: a toolset whose every call goes through dar.

``DarToolset(rt)`` offers the runtime's registered tools to an agent.
``DarToolset(rt, wrap=toolset, effects={...})`` wraps any other toolset (MCP servers
included): each of its tools is registered in ``rt`` as a stand-in whose handler runs the
wrapped toolset's call, so rules, idempotency and the log apply to tools dar does not own.

dar validates the arguments itself, so a wrong-typed argument is a logged refusal rather
than a retry prompt the run may run out of. A refusal or failure reaches the model as a
failed tool result (``ToolFailed``): the run goes on and no retry budget is spent.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dar.integrations import require

require("pydantic_ai", "pydantic-ai", "pydantic-ai-slim")

from pydantic_ai import RunContext, ToolDefinition  # noqa: E402
from pydantic_ai.exceptions import ToolFailed  # noqa: E402
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool, WrapperToolset  # noqa: E402
from pydantic_core import SchemaValidator, core_schema  # noqa: E402

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

__all__ = ["DarToolset"]

#: Any JSON object passes the framework: dar's own validation logs what does not fit.
ANY_ARGUMENTS = SchemaValidator(core_schema.dict_schema(core_schema.str_schema()))

Ctx = RunContext[Any]


class RuntimeTools(AbstractToolset[Any]):
    """The tools registered in a runtime, described as dar describes them to models."""

    def __init__(self, rt: Runtime | AsyncRuntime) -> None:
        self.rt = rt

    @property
    def id(self) -> str | None:
        return None

    async def get_tools(self, ctx: Ctx) -> dict[str, ToolsetTool[Any]]:
        return {t.name: self._describe(t) for t in self.rt.tools if not is_stand_in(t)}

    def _describe(self, tool: Tool[Any]) -> ToolsetTool[Any]:
        schema = tool.input_schema()
        schema.pop("description", None)  # the tool's description goes beside it
        definition = ToolDefinition(
            name=tool.name, description=tool.summary, parameters_json_schema=schema
        )
        return ToolsetTool(
            toolset=self, tool_def=definition, max_retries=0, args_validator=ANY_ARGUMENTS
        )

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: Ctx, tool: ToolsetTool[Any]
    ) -> Any:
        raise NotImplementedError("DarToolset calls these tools through the runtime")


class DarToolset(WrapperToolset[Any]):
    """Every tool call of the agent through ``rt``: ``Agent(model, toolsets=[DarToolset(rt)])``.

    ``wrap``: a toolset whose tools to route through dar instead of the runtime's own;
    ``effects`` classifies them by name or glob (``{"ship_*": "mutate-external"}``), and a
    tool it does not name is ``irreversible``: refused unless a rule applies to it.
    ``correlation_id`` fixes the session; without it, ``dar.session()`` or else the run's
    ``conversation_id`` is used.
    """

    def __init__(
        self,
        rt: Runtime | AsyncRuntime,
        *,
        wrap: AbstractToolset[Any] | None = None,
        effects: EffectMap | None = None,
        correlation_id: str | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(RuntimeTools(rt) if wrap is None else wrap)
        self.rt = rt
        self.wrapping = wrap is not None
        self.effects = effects_of(effects)
        self.correlation_id = correlation_id
        self._id = id

    @property
    def id(self) -> str | None:
        return self._id

    async def get_tools(self, ctx: Ctx) -> dict[str, ToolsetTool[Any]]:
        tools = await self.wrapped.get_tools(ctx)
        if not self.wrapping:
            return tools
        # The wrapped tool's own validation would run outside the log; dar's runs inside.
        return {name: _loose(t) for name, t in tools.items()}

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: Ctx, tool: ToolsetTool[Any]
    ) -> Any:
        cid = correlation(self.correlation_id, ctx.conversation_id or ctx.run_id)
        if self.wrapping:
            registered = stand_in(self.rt, name, self.effects)
            if isinstance(registered, str):
                raise ToolFailed(registered)
            run = self._forward(name, tool_args, ctx, tool)
            token = invoking(run)
            try:
                result = await self._call(name, tool_args, cid)
            finally:
                done_invoking(token)
        else:
            result = await self._call(name, tool_args, cid)
        reply = result.for_model()
        if reply.is_error:
            raise ToolFailed(reply.text)
        return reply.text

    async def _call(self, name: str, args: dict[str, Any], cid: str | None) -> Result:
        if isinstance(self.rt, AsyncRuntime):
            return await self.rt.call(name, args, correlation_id=cid)
        # A sync runtime blocks: in a thread, so the turn's other calls run meanwhile.
        return await asyncio.to_thread(self.rt.call, name, args, correlation_id=cid)

    def _forward(
        self, name: str, args: dict[str, Any], ctx: Ctx, tool: ToolsetTool[Any]
    ) -> Callable[[], Any]:
        """The wrapped toolset's call, as the stand-in tool runs it: a coroutine on an
        AsyncRuntime; on a sync runtime (whose handler runs in a worker thread) a blocking
        call that runs the coroutine on the agent's event loop."""
        original = tool.original if isinstance(tool, LooseTool) else tool

        async def call() -> Any:
            # The wrapped tool's own validation (it may build models from the JSON); inside
            # the handler, so a misfit is a logged failure the model reads.
            valid = original.args_validator.validate_python(args, context=ctx.validation_context)
            return await self.wrapped.call_tool(name, valid, ctx, original)

        if isinstance(self.rt, AsyncRuntime):
            return call
        loop = asyncio.get_running_loop()
        return lambda: asyncio.run_coroutine_threadsafe(call(), loop).result()

    async def for_run(self, ctx: Ctx) -> AbstractToolset[Any]:
        return self._with(await self.wrapped.for_run(ctx))

    async def for_run_step(self, ctx: Ctx) -> AbstractToolset[Any]:
        return self._with(await self.wrapped.for_run_step(ctx))

    def visit_and_replace(
        self, visitor: Callable[[AbstractToolset[Any]], AbstractToolset[Any]]
    ) -> AbstractToolset[Any]:
        return self._with(self.wrapped.visit_and_replace(visitor))

    def _with(self, wrapped: AbstractToolset[Any]) -> DarToolset:
        if wrapped is self.wrapped:
            return self
        twin = copy.copy(self)
        twin.wrapped = wrapped
        return twin


@dataclass(kw_only=True)
class LooseTool(ToolsetTool[Any]):
    """A wrapped toolset's tool that lets any JSON object through to dar."""

    original: ToolsetTool[Any]


def _loose(tool: ToolsetTool[Any]) -> LooseTool:
    return LooseTool(
        toolset=tool.toolset,
        tool_def=tool.tool_def,
        max_retries=tool.max_retries,
        args_validator=ANY_ARGUMENTS,
        original=tool,
    )
