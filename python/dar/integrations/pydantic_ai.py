"""Pydantic AI: a toolset whose every call goes through dar.

``DarToolset(rt)`` offers the runtime's registered tools to an agent.
``DarToolset(rt, wrap=toolset, effects={...})`` wraps any other toolset (MCP servers
included): each of its tools is registered in ``rt`` as a stand-in whose handler runs the
wrapped toolset's call, so rules, idempotency and the log apply to tools dar does not own.

dar validates the arguments itself, so a wrong-typed argument is a logged refusal rather
than a retry prompt the run may run out of. A refusal or failure reaches the model as a
failed tool result (``ToolFailed``): the run goes on and no retry budget is spent.

``durable(model)`` journals the agent's model requests in a durable run (``rt.start``): a
resumed run gets each recorded ``ModelResponse`` back, rebuilt by Pydantic AI's own message
serialization, without asking the model again. Inside a run the turn's tool calls take
turns, in the order Pydantic AI started them, so each is one numbered step. A tool call
that waits for a person raises `RunSuspended` out of ``call_tool``: Pydantic AI runs a
turn's calls as asyncio tasks and re-raises a task's ``BaseException`` as it is (no
exception group; the turn's other calls are cancelled, and a call queued behind it raises
it too, without running), so it ends ``agent.run`` and reaches ``rt.start``, which answers
``suspended``.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from dar.integrations import require

require("pydantic_ai", "pydantic-ai", "pydantic-ai-slim")

from pydantic import TypeAdapter  # noqa: E402
from pydantic_ai import RunContext, ToolDefinition  # noqa: E402
from pydantic_ai.exceptions import ToolFailed  # noqa: E402
from pydantic_ai.messages import (  # noqa: E402
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelResponse,
    ModelResponseStreamEvent,
)
from pydantic_ai.models import (  # noqa: E402
    CompletedStreamedResponse,
    Model,
    ModelRequestParameters,
    StreamedResponse,
)
from pydantic_ai.models.wrapper import WrapperModel  # noqa: E402
from pydantic_ai.settings import ModelSettings  # noqa: E402
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool, WrapperToolset  # noqa: E402
from pydantic_core import SchemaValidator, core_schema  # noqa: E402

from dar.integrations._durable_frameworks import (  # noqa: E402
    in_run,
    jsonable,
    model_call,
    one_tool_call_at_a_time,
    without,
)
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

__all__ = ["DarToolset", "DurableModel", "durable"]

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
        async with one_tool_call_at_a_time():
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


# --- durable model requests ------------------------------------------------------------------

#: Settings that change how a request travels, not what the model answers.
_TRANSPORT = ("timeout", "request_timeout", "first_event_timeout", "max_retries", "extra_headers")
#: What a message holds of the run it was made in (when, which run), not of the conversation.
_MESSAGE_STAMPS = ("timestamp", "request_timestamp", "duration", "run_id", "conversation_id")

_PARAMETERS: TypeAdapter[ModelRequestParameters] = TypeAdapter(ModelRequestParameters)


def durable(model: Model | str) -> DurableModel:
    """Journal a Pydantic AI model's requests: ``Agent(durable(model), toolsets=[...])``.

    Inside a durable run each request is a step: its input (the messages without their
    timestamps and run ids, the settings without transport options, the request parameters:
    tools, output mode, instructions) is compared with the record, and a recorded
    ``ModelResponse`` (parts, usage, ids) comes back rebuilt with ``ModelMessagesTypeAdapter``.
    ``request_stream`` is journaled too: inside a run the wrapped stream is read to its end
    within the step, then its events are passed on (a resumed run gets them rebuilt from the
    recorded response's parts). Outside a run the model is called as it would be without dar.
    """
    if isinstance(model, DurableModel):
        return model
    return DurableModel(model)


class DurableModel(WrapperModel):
    """A Pydantic AI model whose requests are journaled in a durable run (see `durable`)."""

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        def call() -> Any:
            return self.wrapped.request(messages, model_settings, model_request_parameters)

        def request() -> Any:
            return _request(messages, model_settings, model_request_parameters)

        answered: ModelResponse = await model_call(
            self.model_name, request, call, _encode_response, _decode_response
        )
        return answered

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncGenerator[StreamedResponse]:
        if not in_run():
            async with self.wrapped.request_stream(
                messages, model_settings, model_request_parameters, run_context
            ) as live:
                yield live
            return

        async def drained() -> tuple[ModelResponse, list[ModelResponseStreamEvent]]:
            async with self.wrapped.request_stream(
                messages, model_settings, model_request_parameters, run_context
            ) as live:
                events = [event async for event in live]
            return live.get(), events

        def request() -> Any:
            return _request(messages, model_settings, model_request_parameters)

        def encode(done: tuple[ModelResponse, list[Any]]) -> tuple[Any, int]:
            return _encode_response(done[0])

        def decode(recorded: Any) -> tuple[ModelResponse, bool]:
            return _decode_response(recorded), True  # events made again from its parts

        response, events = await model_call(self.model_name, request, drained, encode, decode)
        yield CompletedStreamedResponse(
            response, model_request_parameters=model_request_parameters, replay_events=events
        )


def _request(
    messages: list[ModelMessage],
    settings: ModelSettings | None,
    parameters: ModelRequestParameters,
) -> Any:
    """The request as the journal compares it: what the model reads, without what differs
    between two runs of one conversation (timestamps, run ids) or only moves the request
    (timeouts, retries, headers)."""
    dumped = ModelMessagesTypeAdapter.dump_python(messages, mode="json", fallback=_named)
    return jsonable(
        {
            "messages": [_unstamped(m) for m in dumped],
            "settings": without(dict(settings or {}), _TRANSPORT),
            "parameters": _PARAMETERS.dump_python(parameters, mode="json", fallback=_named),
        }
    )


def _unstamped(message: dict[str, Any]) -> dict[str, Any]:
    bare: dict[str, Any] = without(message, _MESSAGE_STAMPS)
    bare["parts"] = [without(p, _MESSAGE_STAMPS) for p in message.get("parts", [])]
    return bare


def _named(value: Any) -> str:
    return f"<{type(value).__qualname__}>"


def _encode_response(response: ModelResponse) -> tuple[Any, int]:
    (recorded,) = ModelMessagesTypeAdapter.dump_python([response], mode="json")
    return recorded, response.usage.total_tokens


def _decode_response(recorded: Any) -> ModelResponse:
    (response,) = ModelMessagesTypeAdapter.validate_python([recorded])
    if not isinstance(response, ModelResponse):
        raise TypeError(f"the journal holds a {type(response).__name__} for a model response")
    return response
