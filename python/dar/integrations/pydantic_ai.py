"""Pydantic AI: a toolset whose every call goes through dar.

``DarToolset(rt)`` offers the runtime's registered tools to an agent.
``DarToolset(rt, wrap=toolset, effects={...})`` wraps any other toolset (MCP servers
included): each of its tools is registered in ``rt`` as a stand-in whose handler runs the
wrapped toolset's call, so rules, idempotency and the log apply to tools dar does not own.

dar validates the arguments itself, so a wrong-typed argument is a logged refusal rather
than a retry prompt the run may run out of; a wrapped tool's arguments are judged by the
schema the model was shown for it (its validator, then its JSON Schema), before the rules.
A refusal or failure reaches the model as a failed tool result (``ToolFailed``): the run
goes on and no retry budget is spent. A result reaches it as the JSON value dar recorded (a
dict stays a dict, a str is not quoted again), as Pydantic AI sends a tool's own return.

A rule's ``NeedsApproval`` is Pydantic AI's own deferred approval: the call raises
``ApprovalRequired`` with the dar approval id in its metadata, so the run ends with
``DeferredToolRequests`` (the agent's output type must allow it, as for
``requires_approval=True``). `decide` records the person's ``DeferredToolResults`` in dar
(an approval is a single-use grant bound to the exact arguments, a denial is logged with its
message, both with who decided) and returns them for the next run, which runs the approved
call once; the model reads a denial's message.

``durable(model)`` journals the agent's model requests in a durable run (``rt.start``): a
resumed run gets each recorded ``ModelResponse`` back, rebuilt by Pydantic AI's own message
serialization, without asking the model again. Inside a run the turn's tool calls take
turns, in the order Pydantic AI started them, so each is one numbered step. A tool call
that waits for a person raises `RunSuspended` out of ``call_tool``: Pydantic AI runs a
turn's calls as asyncio tasks and re-raises a task's ``BaseException`` as it is (no
exception group; the turn's other calls are cancelled, and a call queued behind it raises
it too, without running), so it ends ``agent.run`` and reaches ``rt.start``, which answers
``suspended``. So inside a durable run a call waiting for a person suspends the run (decide
it with ``rt.approve`` and ``rt.resume``): the journal, not the message history, holds the
run. Outside a run it is Pydantic AI's deferred approval.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

from dar.integrations import require

require("pydantic_ai", "pydantic-ai", "pydantic-ai-slim")

from pydantic import TypeAdapter, ValidationError  # noqa: E402
from pydantic_ai import RunContext, ToolDefinition  # noqa: E402
from pydantic_ai.exceptions import ApprovalRequired, ToolFailed  # noqa: E402
from pydantic_ai.messages import (  # noqa: E402
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelResponse,
    ModelResponseStreamEvent,
    ToolCallPart,
)
from pydantic_ai.models import (  # noqa: E402
    CompletedStreamedResponse,
    Model,
    ModelRequestParameters,
    StreamedResponse,
)
from pydantic_ai.models.wrapper import WrapperModel  # noqa: E402
from pydantic_ai.settings import ModelSettings  # noqa: E402
from pydantic_ai.tools import (  # noqa: E402
    DeferredToolRequests,
    DeferredToolResults,
    ToolApproved,
    ToolDenied,
)
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool, WrapperToolset  # noqa: E402
from pydantic_core import SchemaValidator, core_schema  # noqa: E402

from dar.context import model_tool_call  # noqa: E402
from dar.effects import Status  # noqa: E402
from dar.errors import ConfigurationError  # noqa: E402
from dar.integrations._durable_frameworks import (  # noqa: E402
    in_run,
    jsonable,
    model_call,
    one_tool_call_at_a_time,
    without,
)
from dar.integrations._forward import (  # noqa: E402
    EffectMap,
    Forward,
    Invocation,
    correlation,
    done_invoking,
    effects_of,
    invoking,
    is_stand_in,
    stand_in,
)
from dar.integrations._schema import misfits  # noqa: E402
from dar.records import Result  # noqa: E402
from dar.runtime.aio import AsyncRuntime  # noqa: E402
from dar.runtime.sync import Runtime  # noqa: E402
from dar.signature import (  # noqa: E402
    ArgumentError,
    Signature,
    problem,
    read_signature,
)
from dar.tools import Tool  # noqa: E402

__all__ = ["APPROVAL_ID", "DarToolset", "DurableModel", "adecide", "decide", "durable"]

#: The key of a deferred call's metadata that holds the dar approval it waits for.
APPROVAL_ID = "dar_approval_id"

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
        asked = requested(ctx, tool_args)
        if self.wrapping:
            registered = stand_in(self.rt, name, self.effects, lambda: FRAMEWORK_ARGUMENTS)
            if isinstance(registered, str):
                raise ToolFailed(registered)
            original = tool.original if isinstance(tool, LooseTool) else tool
            token = invoking(self._forward(name, ctx, original))
            judging = _judge.set(_judge_of(original, ctx))
            try:
                with model_tool_call(ctx.tool_call_id):
                    result = await self._call(name, asked, cid)
            finally:
                _judge.reset(judging)
                done_invoking(token)
        else:
            with model_tool_call(ctx.tool_call_id):
                result = await self._call(name, asked, cid)
        if result.status is Status.AWAITING_APPROVAL:
            raise ApprovalRequired({APPROVAL_ID: result.approval_id, "reason": result.reason})
        if result.ok and result.output_json is not None:
            return json.loads(result.output_json)
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

    def _forward(self, name: str, ctx: Ctx, original: ToolsetTool[Any]) -> Invocation:
        """The wrapped toolset's call, as the stand-in tool runs it (on the arguments dar
        logged): a coroutine on an AsyncRuntime; on a sync runtime (whose handler runs in a
        worker thread) a blocking call that runs the coroutine on the agent's event loop."""

        async def call(given: dict[str, Any]) -> Any:
            # The wrapped tool's own validation (it may build models from the JSON); inside
            # the handler, so a misfit is a logged failure the model reads.
            valid = original.args_validator.validate_python(given, context=ctx.validation_context)
            return await self.wrapped.call_tool(name, valid, ctx, original)

        if isinstance(self.rt, AsyncRuntime):
            return call
        loop = asyncio.get_running_loop()
        return lambda given: asyncio.run_coroutine_threadsafe(call(given), loop).result()

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


# --- a wrapped tool's arguments, judged by its own schema before the rules ------------------

#: Why the arguments of the wrapped tool in flight do not fit its schema (none: they fit).
_judge: ContextVar[Callable[[str], list[str]] | None] = ContextVar("dar_judge", default=None)


@dataclass(frozen=True, eq=False)
class FrameworkArguments(Signature):
    """A stand-in's signature: the framework tool's schema judges the call in flight, so a
    misfit is refused (``invalid arguments: $.amount: expected number, got string``) and
    logged before any rule reads it, as an owned tool's is."""

    def validate(self, canonical: str, *, coerce: bool = False) -> dict[str, Any]:
        judge = _judge.get()
        problems = judge(canonical) if judge is not None else []
        if problems:
            raise ArgumentError(problems)
        return super().validate(canonical, coerce=coerce)


def _framework_arguments() -> FrameworkArguments:
    base = read_signature(Forward("wrapped"), "wrapped", coerce=False)
    return FrameworkArguments(base.description, base.model, base.names, base.returns)


FRAMEWORK_ARGUMENTS = _framework_arguments()


def _judge_of(tool: ToolsetTool[Any], ctx: Ctx) -> Callable[[str], list[str]]:
    """The tool's own validator (strictly, as dar validates its own tools: ``"3"`` is no
    number), then its JSON Schema (an MCP tool's validator takes any object)."""

    def judge(canonical: str) -> list[str]:
        try:
            tool.args_validator.validate_json(
                canonical, strict=True, context=ctx.validation_context
            )
        except ValidationError as exc:
            return [problem(e) for e in exc.errors(include_url=False)]
        schema = tool.tool_def.parameters_json_schema
        return misfits(schema, json.loads(canonical))

    return judge


# --- a person's decisions on deferred approvals, recorded in dar ------------------------------

Decisions = DeferredToolResults | Mapping[str, bool | ToolApproved | ToolDenied]


@dataclass(frozen=True)
class Decision:
    """One person's decision on one dar approval: ``approve`` with the keyword arguments
    of ``rt.approve`` beyond who (``edit``), or deny with ``reason``."""

    approval_id: str
    by: str
    approve: bool
    reason: str | None = None
    edit: dict[str, Any] = field(default_factory=dict)


def decide(
    rt: Runtime, requests: DeferredToolRequests, decisions: Decisions, *, by: str | None = None
) -> DeferredToolResults:
    """Record in dar what a person decided on a run's ``DeferredToolRequests`` and return the
    ``DeferredToolResults`` to resume the run with: ``agent.run_sync(message_history=...,
    deferred_tool_results=decide(rt, requests, {"c1": True}, by="alice"))``.

    ``decisions`` is Pydantic AI's own ``DeferredToolResults`` or the ``approvals`` mapping
    of one (``True``, ``False``, ``ToolApproved()``, ``ToolDenied("why")`` by tool call
    id). Who decided is ``answered_by[tool_call_id]``, else ``by``. An approval becomes a
    dar grant for that exact call, used once; a denial is logged with its message, which
    the model reads. Approvals dar did not ask for pass through as they are."""
    results, planned = _plan(requests, decisions, by)
    for d in planned:
        if d.approve:
            rt.approve(d.approval_id, by=d.by, **d.edit)
        else:
            rt.deny(d.approval_id, by=d.by, reason=d.reason)
    return results


async def adecide(
    rt: AsyncRuntime,
    requests: DeferredToolRequests,
    decisions: Decisions,
    *,
    by: str | None = None,
) -> DeferredToolResults:
    """`decide` on an `AsyncRuntime`."""
    results, planned = _plan(requests, decisions, by)
    for d in planned:
        if d.approve:
            await rt.approve(d.approval_id, by=d.by, **d.edit)
        else:
            await rt.deny(d.approval_id, by=d.by, reason=d.reason)
    return results


def _plan(
    requests: DeferredToolRequests, decisions: Decisions, by: str | None
) -> tuple[DeferredToolResults, list[Decision]]:
    """The decisions on dar's approvals, each checked before any is recorded, and the
    results with who answered each call."""
    if not isinstance(decisions, DeferredToolResults):
        decisions = requests.build_results(approvals=decisions)
    answered = dict(decisions.answered_by)
    verdicts = decisions.to_tool_call_results()
    planned: list[Decision] = []
    for call in requests.approvals:
        verdict = verdicts.get(call.tool_call_id)
        approval_id = requests.metadata.get(call.tool_call_id, {}).get(APPROVAL_ID)
        if approval_id is None or not isinstance(verdict, (ToolApproved, ToolDenied)):
            continue  # not dar's to record, or left undecided
        who = answered.get(call.tool_call_id) or by
        if not who:
            raise ConfigurationError(
                f"say who decided the call {call.tool_call_id} ({call.tool_name}): "
                "decide(..., by='alice') or answered_by"
            )
        answered[call.tool_call_id] = who
        if isinstance(verdict, ToolDenied):
            planned.append(Decision(approval_id, who, False, reason=verdict.message))
        else:
            edit = {} if verdict.override_args is None else edited(call, verdict.override_args)
            planned.append(Decision(approval_id, who, True, edit=edit))
    return replace(decisions, answered_by=answered), planned


def requested(ctx: Ctx, args: dict[str, Any]) -> dict[str, Any]:
    """The arguments the model asked with. A call a person approved with an edit arrives
    with the edited arguments; dar's grant is bound to the request and runs the edit, so
    the request is what goes to dar (a call never approved is made as it arrives)."""
    if not ctx.tool_call_approved:
        return args
    for message in reversed(ctx.messages):
        for part in getattr(message, "parts", ()):
            if isinstance(part, ToolCallPart) and part.tool_call_id == ctx.tool_call_id:
                return part.args_as_dict()
    return args


def edited(call: ToolCallPart, override_args: dict[str, Any]) -> dict[str, Any]:
    """Pydantic AI's edit (``ToolApproved(override_args=...)``) as a dar grant: the keyword
    arguments ``rt.approve`` takes to bind the grant to the edited arguments (checked there
    against the tool's schema and rules), so the waiting call runs once, on the edit."""
    return {"arguments": dict(override_args)}


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
