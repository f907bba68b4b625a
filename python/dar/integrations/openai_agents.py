"""OpenAI Agents SDK: the runtime's tools as the SDK's ``FunctionTool`` objects.

The Agents SDK runs the loop itself, so the integration is a tool list: each tool hands the
model's JSON arguments to ``rt.call`` unparsed (the runtime validates and logs them) and
returns the text the model should read. The SDK runs a turn's tool calls concurrently;
the runtime makes identical ones execute once. A sync ``Runtime`` is called in a worker
thread so the SDK's event loop never blocks on the database or the handler.

A call to a tool the agent does not have never reaches these tools: the SDK handles it
(``RunConfig(tool_not_found_behavior="return_error_to_model")`` tells the model).

``durable(model)`` (or ``durable(provider)``) journals the agent's model calls in a durable
run (``rt.start``): a resumed run gets each recorded ``ModelResponse`` back, rebuilt as the
SDK's types, without asking the model again. Inside a run the turn's tool calls take
turns, in the order the SDK started them, so each is one numbered step. A tool call that
waits for a person raises `RunSuspended` out of the tool: the SDK catches ``Exception``
from a tool and re-raises anything else from its tool tasks (cancelling the turn's other
calls; a call queued behind it raises it too, without running), so it ends ``Runner.run``
(or ``stream_events()`` of ``Runner.run_streamed``) and reaches ``rt.start``, which answers
``suspended``.

A person decides in the SDK's own way. A tool whose calls a rule may send to a person
(`NeedsApproval`, or ``tool(approval=True)``) gets the SDK's ``needs_approval``, which makes
the call through ``rt.call``: a call that waits for a person runs nothing and interrupts the
run (``result.interruptions``); any other call is answered there, once, and the tool returns
that answer when the SDK invokes it. ``approve(rt, state, item, by=...)`` and
``reject(rt, state, item, by=..., reason=...)`` decide the call in dar (the grant is bound
to those arguments and single use, and the log says who) and in the SDK's ``RunState``; the
resumed run makes the call again, so it runs on the grant, once. The SDK's own
``state.approve(item)`` alone runs nothing: the call still waits for dar's grant. Inside a
durable run the call suspends the run instead, as above.
"""

from __future__ import annotations

import asyncio
import json
import typing
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, overload

from dar.context import current_session, model_tool_call
from dar.core.decide import input_digest
from dar.effects import Status
from dar.errors import ConfigurationError
from dar.integrations import require
from dar.records import Approval, Result
from dar.rules import NeedsApproval
from dar.runtime.aio import AsyncRuntime
from dar.runtime.sync import Runtime
from dar.tools import Tool as DarTool

_agents = require("agents", "openai-agents", "openai-agents")


from agents import (  # noqa: E402
    AgentOutputSchemaBase,
    FunctionTool,
    Handoff,
    Model,
    ModelProvider,
    ModelResponse,
    ModelSettings,
    ModelTracing,
    RunState,
    Tool,
    ToolApprovalItem,
)
from agents.items import TResponseInputItem, TResponseStreamEvent  # noqa: E402
from agents.usage import deserialize_usage, serialize_usage  # noqa: E402
from openai.types.responses import ResponseOutputItem, ResponseStreamEvent  # noqa: E402
from openai.types.responses.response_prompt_param import ResponsePromptParam  # noqa: E402
from pydantic import BaseModel, TypeAdapter, ValidationError  # noqa: E402

from dar.integrations._durable_frameworks import (  # noqa: E402
    in_run,
    jsonable,
    model_call,
    model_stream,
    one_tool_call_at_a_time,
    without,
)


def function_tools(rt: Runtime | AsyncRuntime, *, correlation_id: str | None = None) -> list[Any]:
    """One ``agents.FunctionTool`` per registered tool, for ``Agent(tools=...)``.

    A call's correlation id is ``correlation_id``, else the ``dar.session()`` around the
    run, else the run's ``RunConfig.group_id`` (the SDK's conversation id for traces). The
    SDK does not show the group id to ``needs_approval``, where a call of a tool that may
    wait for a person is made: such a tool's calls take only the first two. Whether a tool
    may wait for a person is read from the rules in force now (see `_may_ask`).
    """
    schemas = rt.tool_schemas("openai-responses")
    return [
        _function_tool(rt, schema, correlation_id, _may_ask(rt, tool))
        for tool, schema in zip(rt.tools, schemas, strict=True)
    ]


def _function_tool(
    rt: Runtime | AsyncRuntime, schema: dict[str, Any], given: str | None, asks: bool
) -> Any:
    name: str = schema["name"]
    # Calls that needs_approval made and that wait for no one, by the SDK's call id: their
    # answer, and the arguments it was for.
    answered: dict[str, tuple[str, Result]] = {}

    async def needs_approval(ctx: Any, params: dict[str, Any], call_id: str) -> bool:
        if in_run():
            return False  # a durable run suspends instead, from the tool (see the module)
        with model_tool_call(call_id):
            result = await _call(rt, name, params, _correlation(ctx, given))
        if result.status is Status.AWAITING_APPROVAL:
            return True
        answered[call_id] = (_same(params), result)
        return False

    async def invoke(ctx: Any, arguments: str) -> str:
        made = answered.pop(ctx.tool_call_id, None)
        if made is not None and made[0] == _same(_parsed(arguments)):
            return made[1].for_model().text
        run = None if asks else ctx  # as needs_approval, which is not shown the group id
        async with one_tool_call_at_a_time():
            with model_tool_call(getattr(ctx, "tool_call_id", None)):
                result = await _call(rt, name, arguments, _correlation(run, given))
        return result.for_model().text

    return _agents.FunctionTool(
        name=name,
        description=schema["description"],
        params_json_schema=schema["parameters"],
        on_invoke_tool=invoke,
        # Strict only where the schema already fits it, as the runtime describes it; the
        # SDK would otherwise rewrite it and the model would be told a different schema.
        strict_json_schema=schema["strict"],
        # The SDK also stops for a person on arguments that are not a JSON object, before
        # asking this: so only a tool that may wait for one has it.
        needs_approval=needs_approval if asks else False,
    )


def _parsed(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return None


def _same(value: Any) -> str:
    """Arguments as the SDK parsed them, to tell the call needs_approval answered from
    another one the model made under the same call id."""
    return json.dumps(value, sort_keys=True)


def _may_ask(rt: Runtime | AsyncRuntime, tool: DarTool[Any]) -> bool:
    """Whether a call of ``tool`` may wait for a person: ``tool(approval=True)``, or a rule
    in force for it whose check may answer `NeedsApproval` by its return annotation (a
    check that declares none, or one that cannot be read, may)."""
    return tool.approval or any(
        _may_answer_approval(r.check) for r in rt.rules if r.applies(tool.name, tool.effect)
    )


def _may_answer_approval(check: Callable[..., Any]) -> bool:
    try:
        declared = typing.get_type_hints(check).get("return", Any)
    except Exception:  # an annotation naming what its module does not have
        return True
    return declared is Any or NeedsApproval in (typing.get_args(declared) or (declared,))


async def _call(
    rt: Runtime | AsyncRuntime, name: str, arguments: Any, correlation_id: str | None
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


# --- a person's decision, in dar and in the SDK's RunState ---------------------------------


@overload
def approve(
    rt: Runtime, state: RunState[Any], item: ToolApprovalItem, *, by: str, note: str | None = None
) -> Approval | None: ...
@overload
def approve(
    rt: AsyncRuntime,
    state: RunState[Any],
    item: ToolApprovalItem,
    *,
    by: str,
    note: str | None = None,
) -> Coroutine[Any, Any, Approval | None]: ...
def approve(
    rt: Runtime | AsyncRuntime,
    state: RunState[Any],
    item: ToolApprovalItem,
    *,
    by: str,
    note: str | None = None,
) -> Any:
    """``state.approve(item)``, with dar's grant for exactly that call, approved by ``by``:
    the run resumed from ``state`` runs it, once. Returns the grant (to await on an
    `AsyncRuntime`), or None when dar has no request for the call (the SDK stopped for a
    person by itself, on arguments that are not a JSON object): dar judges it when the run
    resumes, as any call."""
    return _decide(
        rt, item, lambda approval_id: rt.approve(approval_id, by=by, note=note),
        lambda _decided: state.approve(item),
    )  # fmt: skip


@overload
def reject(
    rt: Runtime, state: RunState[Any], item: ToolApprovalItem, *, by: str, reason: str | None = None
) -> Approval | None: ...
@overload
def reject(
    rt: AsyncRuntime,
    state: RunState[Any],
    item: ToolApprovalItem,
    *,
    by: str,
    reason: str | None = None,
) -> Coroutine[Any, Any, Approval | None]: ...
def reject(
    rt: Runtime | AsyncRuntime,
    state: RunState[Any],
    item: ToolApprovalItem,
    *,
    by: str,
    reason: str | None = None,
) -> Any:
    """``state.reject(item)``, with dar's denial of exactly that call by ``by``: nothing
    runs, and the resumed run tells the model, in dar's words, who refused it and why.
    Returns the decision as `approve` does."""

    def tell(decided: Approval | None) -> None:
        said = f"denied by {by}" + (f": {reason}" if reason else "")
        rule = None if decided is None else decided.rule_name
        refused = Result(Status.REJECTED, reason=said, rule=rule)
        state.reject(item, rejection_message=refused.for_model().text)

    return _decide(rt, item, lambda approval_id: rt.deny(approval_id, by=by, reason=reason), tell)


def _decide(
    rt: Runtime | AsyncRuntime,
    item: ToolApprovalItem,
    decide: Callable[[str], Any],
    tell: Callable[[Approval | None], None],
) -> Any:
    """Decide dar's pending request for ``item`` (``decide(approval_id)``: the runtime's
    approve or deny), then tell the SDK's state (``tell``): a coroutine on an
    `AsyncRuntime`. When dar refuses to decide (decided by someone else meanwhile), the
    SDK's state is left as it was."""
    if isinstance(rt, AsyncRuntime):
        art = rt

        async def decided_async() -> Approval | None:
            request = _pending_request(art, item, await art.approvals("pending"))
            done: Approval | None = None if request is None else await decide(request.approval_id)
            tell(done)
            return done

        return decided_async()
    request = _pending_request(rt, item, rt.approvals("pending"))
    done: Approval | None = None if request is None else decide(request.approval_id)
    tell(done)
    return done


def _pending_request(
    rt: Runtime | AsyncRuntime, item: ToolApprovalItem, pending: list[Approval]
) -> Approval | None:
    """dar's pending request for the call the SDK stopped at: its tool and input hash."""
    tool = next((t for t in rt.tools if t.name == item.name), None)
    digest = None if tool is None else input_digest(tool, item.arguments)
    found = [a for a in pending if (a.tool_name, a.input_hash) == (item.name, digest)]
    if digest is None or not found:
        return None
    if len(found) > 1:
        raise ConfigurationError(
            f"{len(found)} pending requests are for this very {item.name} call, under other "
            f"keys ({', '.join(a.approval_id for a in found)}): decide one with "
            "rt.approve(approval_id, by=...) and state.approve(item)"
        )
    return found[0]


# --- durable model calls -------------------------------------------------------------------

_OUTPUT_ITEM: TypeAdapter[Any] = TypeAdapter(ResponseOutputItem)
_STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)

#: Settings that change how a request travels, not what the model answers.
_TRANSPORT = ("extra_headers", "extra_query", "retry", "timeout")
#: A cache hint the SDK may make up per ``Runner.run``: not the model's input.
_CACHE_KEY = ("prompt_cache_key",)


@overload
def durable(model_or_provider: Model) -> Model: ...
@overload
def durable(model_or_provider: ModelProvider) -> ModelProvider: ...
def durable(model_or_provider: Model | ModelProvider) -> Model | ModelProvider:
    """Journal the model calls of an Agents SDK ``Model`` (``get_response`` and
    ``stream_response``), or of every model a ``ModelProvider`` gives
    (``RunConfig(model_provider=durable(provider))``).

    Inside a durable run each call is a step: its request (instructions, input items,
    settings, tools, output schema, handoffs, previous response and conversation ids,
    prompt) is compared with the record, and a recorded ``ModelResponse`` (output items,
    usage, response id) comes back rebuilt as the SDK's types, a recorded stream as its
    events. Outside a run the model is called as it would be without dar."""
    if isinstance(model_or_provider, (DurableModel, DurableProvider)):
        return model_or_provider
    if isinstance(model_or_provider, Model):
        return DurableModel(model_or_provider)
    if isinstance(model_or_provider, ModelProvider):
        return DurableProvider(model_or_provider)
    raise TypeError(
        f"durable() takes an agents.Model or agents.ModelProvider, "
        f"not {type(model_or_provider).__name__}"
    )


class DurableProvider(ModelProvider):
    """A ``ModelProvider`` whose models are `DurableModel`s."""

    def __init__(self, provider: ModelProvider) -> None:
        self.wrapped = provider

    def get_model(self, model_name: str | None) -> Model:
        return DurableModel(self.wrapped.get_model(model_name))

    async def aclose(self) -> None:
        await self.wrapped.aclose()


class DurableModel(Model):
    """An Agents SDK ``Model`` whose calls are journaled in a durable run (see `durable`).
    Anything else is the wrapped model's."""

    def __init__(self, model: Model) -> None:
        self.wrapped = model
        named = getattr(model, "model", None)
        self.name = named if isinstance(named, str) and named else type(model).__name__

    def __getattr__(self, name: str) -> Any:
        # What the SDK asks a model besides its calls (the prompt-cache support, say).
        if name == "wrapped":
            raise AttributeError(name)
        return getattr(self.wrapped, name)

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        def call() -> Any:
            return self.wrapped.get_response(
                system_instructions, input, model_settings, tools, output_schema, handoffs,
                tracing, previous_response_id=previous_response_id,
                conversation_id=conversation_id, prompt=prompt,
            )  # fmt: skip

        def request() -> Any:
            return _request(
                system_instructions, input, model_settings, tools, output_schema, handoffs,
                previous_response_id, conversation_id, prompt,
            )  # fmt: skip

        answered: ModelResponse = await model_call(
            self.name, request, call, _encode_response, _decode_response
        )
        return answered

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        def open_stream() -> AsyncIterator[Any]:
            return self.wrapped.stream_response(
                system_instructions, input, model_settings, tools, output_schema, handoffs,
                tracing, previous_response_id=previous_response_id,
                conversation_id=conversation_id, prompt=prompt,
            )  # fmt: skip

        if not in_run():
            async for event in open_stream():
                yield event
            return

        def request() -> Any:
            return _request(
                system_instructions, input, model_settings, tools, output_schema, handoffs,
                previous_response_id, conversation_id, prompt,
            )  # fmt: skip

        async for event in model_stream(
            self.name, request, open_stream, _dump, _decode_event, _stream_tokens
        ):
            yield event

    async def close(self) -> None:
        await self.wrapped.close()

    async def _cleanup_on_run_end(self, owner: object) -> None:
        await self.wrapped._cleanup_on_run_end(owner)

    def get_retry_advice(self, request: Any) -> Any:
        return self.wrapped.get_retry_advice(request)


def _request(
    instructions: str | None,
    input: Any,
    settings: ModelSettings,
    tools: list[Tool],
    output_schema: AgentOutputSchemaBase | None,
    handoffs: list[Handoff],
    previous_response_id: str | None,
    conversation_id: str | None,
    prompt: Any,
) -> Any:
    """The model's input as the journal compares it (the tracing setting and transport
    options left out)."""
    given = {k: v for k, v in settings.to_json_dict().items() if v is not None}
    given = without(given, _TRANSPORT)
    for extra in ("extra_args", "extra_body"):
        given[extra] = without(given.get(extra), _CACHE_KEY)
    output = None
    if output_schema is not None and not output_schema.is_plain_text():
        output = {
            "name": output_schema.name(),
            "schema": output_schema.json_schema(),
            "strict": output_schema.is_strict_json_schema(),
        }
    return jsonable(
        {
            "instructions": instructions,
            "input": input,
            "settings": given,
            "tools": [_tool(t) for t in tools],
            "output": output,
            "handoffs": [
                {
                    "name": h.tool_name,
                    "description": h.tool_description,
                    "schema": h.input_json_schema,
                    "strict": h.strict_json_schema,
                }
                for h in handoffs
            ],
            "previous_response_id": previous_response_id,
            "conversation_id": conversation_id,
            "prompt": prompt,
        }
    )


def _tool(tool: Tool) -> dict[str, Any]:
    if isinstance(tool, FunctionTool):
        return {
            "type": "function",
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.params_json_schema,
            "strict": tool.strict_json_schema,
        }
    # A hosted tool: its kind, name and configuration (never its callbacks).
    return {
        "type": type(tool).__name__,
        "name": getattr(tool, "name", None),
        "config": getattr(tool, "tool_config", None),
    }


def _dump(value: Any) -> Any:
    """An output item or stream event as JSON, as the SDK's types read it back (fields
    never set are left out, so the rebuilt object dumps as the original did)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return jsonable(value)


def _encode_response(response: ModelResponse) -> tuple[Any, int]:
    recorded = {
        "output": [_dump(item) for item in response.output],
        "usage": serialize_usage(response.usage),
        "response_id": response.response_id,
        "request_id": response.request_id,
        "raw_usage": response.raw_usage,
    }
    return recorded, response.usage.total_tokens


def _decode_response(recorded: Any) -> ModelResponse:
    return ModelResponse(
        output=[_rebuilt(_OUTPUT_ITEM, item) for item in recorded["output"]],
        usage=deserialize_usage(recorded["usage"]),
        response_id=recorded.get("response_id"),
        request_id=recorded.get("request_id"),
        raw_usage=recorded.get("raw_usage"),
    )


def _decode_event(recorded: Any) -> Any:
    return _rebuilt(_STREAM_EVENT, recorded)


def _rebuilt(adapter: TypeAdapter[Any], recorded: Any) -> Any:
    try:
        return adapter.validate_python(recorded)
    except ValidationError:
        return recorded  # an item the installed openai types do not know: as the SDK keeps it


def _stream_tokens(events: list[Any]) -> int:
    """The tokens a streamed response used, as its completed event reports them."""
    for event in reversed(events):
        usage = getattr(getattr(event, "response", None), "usage", None)
        if usage is not None:
            return int(getattr(usage, "total_tokens", 0) or 0)
    return 0
