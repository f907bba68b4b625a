"""LangChain: dar's tools as LangChain tools, and a middleware for any agent's tools.

``tools(rt)`` turns the runtime's registered tools into ``StructuredTool``s (the schema is
``Tool.input_schema()``, so dar, not LangChain, validates the arguments and logs misfits).
``DarMiddleware(rt, effects=...)`` routes every tool call of a ``create_agent`` agent
through dar: each tool the agent owns is registered in ``rt`` as a stand-in whose handler
runs the agent's own tool call, so rules, idempotency and the log apply to it too.

A refusal or failure is a ``ToolMessage`` with ``status="error"`` that the model reads; the
run goes on. An agent tool's arguments are checked against its own schema before the rules,
as an owned tool's are; what it returns reaches the model as it would without dar. The
session is the explicit ``correlation_id``, else ``dar.session()``, else the LangGraph
``thread_id``.

A call a rule sends to a person interrupts the graph as ``HumanInTheLoopMiddleware`` does
(the same request, so the UIs that render it render this; a checkpointer keeps the graph
until the answer). The graph is resumed with LangChain's own answer plus who decides,
``Command(resume={"decisions": [{"type": "approve"}], "by": "alice"})``: the decision is
recorded in dar with that name, then the call is made again and runs once, on exactly the
arguments that were shown (``reject`` with a ``message``: the model reads the reason). Each
waiting call is one interruption; several at once are answered by interrupt id.

In a durable run (``rt.start``) the middleware also journals the agent's model calls: a
resumed run gets each recorded answer (its messages, rebuilt with ``messages_from_dict``)
back without asking the model again. ``durable(chat_model)`` does the same for a chat model
used in a loop of one's own. Inside a run, a tool call that waits for a person does not
interrupt the graph (the run, not a checkpointer, is what survives): it raises
`RunSuspended`, decided with ``rt.approve`` and continued with ``rt.resume``. The tools and
the tool node handle ``Exception`` only, and LangGraph re-raises anything else from its tool
tasks (threads under ``invoke``, asyncio tasks under ``ainvoke``), so it ends ``invoke`` and
reaches ``rt.start``, which answers ``suspended``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from dar.integrations import require

require("langchain.agents", "langchain")

from langchain.agents.middleware import (  # noqa: E402
    AgentMiddleware,
    ModelRequest,
    ModelResponse,
    ToolCallRequest,
)
from langchain.agents.middleware.human_in_the_loop import (  # noqa: E402
    Action,
    ApproveDecision,
    EditDecision,
    RejectDecision,
)
from langchain_core.callbacks import (  # noqa: E402
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput  # noqa: E402
from langchain_core.messages import (  # noqa: E402
    AIMessage,
    BaseMessage,
    ToolMessage,
    messages_from_dict,
    messages_to_dict,
)
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig  # noqa: E402
from langchain_core.tools import BaseTool, StructuredTool, ToolException  # noqa: E402
from langchain_core.utils.function_calling import convert_to_openai_tool  # noqa: E402
from langgraph.types import interrupt  # noqa: E402
from pydantic import (  # noqa: E402
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    create_model,
)

from dar.context import model_tool_call  # noqa: E402
from dar.effects import Status  # noqa: E402
from dar.errors import ConfigurationError, DarError  # noqa: E402
from dar.integrations._durable_frameworks import (  # noqa: E402
    KIND,
    blocking_one_tool_call_at_a_time,
    jsonable,
    model_call,
    one_tool_call_at_a_time,
    without,
)
from dar.integrations._forward import (  # noqa: E402
    EffectMap,
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
from dar.reply import edit_note  # noqa: E402
from dar.runtime.aio import AsyncRuntime  # noqa: E402
from dar.runtime.journal import journaled, running  # noqa: E402
from dar.runtime.sync import Runtime  # noqa: E402
from dar.signature import ArgumentError, Signature  # noqa: E402
from dar.tools import Tool  # noqa: E402

__all__ = ["DarMiddleware", "DurableChatModel", "durable", "tools"]

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

        def once() -> Result:
            with blocking_one_tool_call_at_a_time():
                return rt.call(name, arguments, correlation_id=cid)

        return _content(reviewed(rt, name, arguments, once))

    async def arun(dar_config: RunnableConfig, **arguments: Any) -> str:
        cid = correlation(explicit, thread_id(dar_config))
        assert isinstance(rt, AsyncRuntime)

        async def once() -> Result:
            async with one_tool_call_at_a_time():
                return await rt.call(name, arguments, correlation_id=cid)

        return _content(await areviewed(rt, name, arguments, once))

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


# --- a call waiting for a person: LangChain's own human-in-the-loop interruption -------------

#: The decisions a reviewer may send.
DECISIONS = ("approve", "edit", "reject")


@dataclasses.dataclass(frozen=True)
class Decision:
    """A reviewer's answer as dar records it: a grant (of the edited ``arguments``, when the
    reviewer edited the call) or a denial, by whom, with a note."""

    approve: bool
    by: str
    note: str | None = None
    arguments: dict[str, Any] | None = None
    tool: str | None = None  # an edit's tool: it must be the call's


def reviewed(rt: Runtime, name: str, args: Any, call: Callable[[], Result]) -> Result:
    """``call()``; when it waits for a person (outside a durable run, where the run
    suspends instead), the graph is interrupted, and the resumed reviewer's decision is
    recorded and the call made again: it runs once on the granted arguments, or answers the
    denial's reason."""
    result = call()
    decision = _review(name, args, result)
    if decision is None:
        return result
    assert result.approval_id is not None
    try:
        _same_tool(name, decision)
        _decide(rt, result.approval_id, decision)
    except DarError as exc:
        return _edit_refused(result, exc)
    return call()


async def areviewed(
    rt: Runtime | AsyncRuntime, name: str, args: Any, call: Callable[[], Awaitable[Result]]
) -> Result:
    """`reviewed` for a call an SDK awaits."""
    result = await call()
    decision = _review(name, args, result)
    if decision is None:
        return result
    assert result.approval_id is not None
    try:
        _same_tool(name, decision)
        if isinstance(rt, AsyncRuntime):
            await _adecide(rt, result.approval_id, decision)
        else:
            await asyncio.to_thread(_decide, rt, result.approval_id, decision)
    except DarError as exc:
        return _edit_refused(result, exc)
    return await call()


def _same_tool(name: str, decision: Decision) -> None:
    """An edit changes a call's arguments, never which tool it calls."""
    if decision.tool not in (None, name):
        raise ConfigurationError(f"an edit of a {name!r} call cannot call {decision.tool!r}")


def _edit_refused(waiting: Result, exc: DarError) -> Result:
    """A reviewer's edit dar refused (it breaks the tool's schema or a rule): nothing was
    granted, the request still waits, and the model reads why. Raising instead would leave
    the graph replaying the same resume on every later one."""
    reason = f"the reviewer's edit was refused ({exc}); the call still waits for a person"
    return dataclasses.replace(waiting, status=Status.REJECTED, reason=reason)


def _decide(rt: Runtime, approval_id: str, decision: Decision) -> None:
    if decision.approve:
        rt.approve(approval_id, by=decision.by, note=decision.note, arguments=decision.arguments)
    else:
        rt.deny(approval_id, by=decision.by, reason=decision.note)


async def _adecide(rt: AsyncRuntime, approval_id: str, decision: Decision) -> None:
    if decision.approve:
        await rt.approve(
            approval_id, by=decision.by, note=decision.note, arguments=decision.arguments
        )
    else:
        await rt.deny(approval_id, by=decision.by, reason=decision.note)


def _review(name: str, args: Any, result: Result) -> Decision | None:
    """Ask the reviewer with the request ``HumanInTheLoopMiddleware`` interrupts with (so
    the UIs that render it render this), and read the decision the graph is resumed with;
    None when nobody is to be asked (the call does not wait, or it is not in a graph).
    LangGraph checks the answer against `RESUME` before it keeps it: a wrong one is
    raised to the resuming caller, and the call can be answered again."""
    if result.status is not Status.AWAITING_APPROVAL or result.approval_id is None:
        return None
    request = {
        "action_requests": [{"name": name, "args": args, "description": result.reason or ""}],
        "review_configs": [{"action_name": name, "allowed_decisions": list(DECISIONS)}],
    }
    try:
        decided: Any = interrupt(request, response_schema=RESUME)
    except (RuntimeError, KeyError):  # no graph to pause: the model reads that the call
        return None  # waits, as from any other integration
    assert isinstance(decided, Decision)  # RESUME's validator made it
    return decided


class Resume(BaseModel):
    """What a reviewer resumes the graph with: LangChain's own answer, one decision, and
    who decides (LangChain does not know): ``Command(resume={"decisions": [{"type":
    "approve"}], "by": "alice"})``; a ``reject`` may carry a ``message``, the reason."""

    decisions: list[
        Annotated[ApproveDecision | EditDecision | RejectDecision, Field(discriminator="type")]
    ] = Field(min_length=1, max_length=1)
    by: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _decided(resume: Resume) -> Decision:
    decision = resume.decisions[0]
    if decision["type"] == "approve":
        return Decision(True, resume.by)
    if decision["type"] == "reject":
        return Decision(False, resume.by, decision.get("message"))
    return _approve_edited(resume.by, decision["edited_action"])


RESUME = Annotated[Resume, AfterValidator(_decided)]


def _approve_edited(by: str, edited_action: Action) -> Decision:
    """An ``edit`` decision: the grant binds to the edited arguments (checked by dar against
    the tool's schema and rules), and the waiting call is answered with the edited call's
    result. The edited action's name must be the call's (`_same_tool`)."""
    return Decision(True, by, arguments=dict(edited_action["args"]), tool=edited_action["name"])


class DarMiddleware(AgentMiddleware):
    """Every tool call of the agent through ``rt``:
    ``create_agent(model, tools, middleware=[DarMiddleware(rt, effects={...})])``.

    ``effects`` classifies the agent's tools by name or glob (``{"ship_*":
    "mutate-external"}``); a tool it does not name is ``irreversible``: refused unless a
    rule applies to it. Tools made by ``tools(rt)`` pass through (they call dar already).

    In a durable run it also journals each model call (``wrap_model_call``): the request is
    the system message, the messages without their ids and transport metadata, the tools,
    the tool choice, the response format and the settings; a resume gets the recorded
    messages (and structured response) back without asking the model. List it first, so
    the middleware it wraps (retries, fallbacks) runs inside one journaled step. Inside a
    run the tool calls of a turn take turns; ``invoke`` runs them in threads, in an order
    that may differ between a run and its resume (a turn of several calls may then not
    replay: ``ainvoke`` keeps the order).
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

        def once() -> Result:
            token = invoking(lambda given: _recorded(handler(on(request, given))))
            try:
                with blocking_one_tool_call_at_a_time(), model_tool_call(request.tool_call["id"]):
                    return rt.call(name, args, correlation_id=cid)
            finally:
                done_invoking(token)

        return _message(request, reviewed(rt, name, args, once))

    async def awrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], Awaitable[Reply]]
    ) -> Reply:
        early = self._early(request)
        if early is not None:
            return await handler(request) if early is PASS else early
        name, args, cid = self._call(request)
        rt = self.rt

        async def once() -> Result:
            token = invoking(_forward(rt, request, handler))
            try:
                async with one_tool_call_at_a_time():
                    with model_tool_call(request.tool_call["id"]):
                        if isinstance(rt, AsyncRuntime):
                            return await rt.call(name, args, correlation_id=cid)
                        # A sync runtime blocks: in a thread, so the turn's other calls go on.
                        return await asyncio.to_thread(rt.call, name, args, correlation_id=cid)
            finally:
                done_invoking(token)

        return _message(request, await areviewed(rt, name, args, once))

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse:
        """The agent's model call; inside a durable run, journaled (see the module)."""
        if running() is None or isinstance(request.model, DurableChatModel):
            return handler(request)
        answered: ModelResponse = journaled(
            KIND,
            model_name(request.model),
            model_request(request),
            lambda: handler(request),
            _encode_response,
            _response_decoder(request),
        )
        return answered

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse:
        if running() is None or isinstance(request.model, DurableChatModel):
            return await handler(request)
        answered: ModelResponse = await model_call(
            model_name(request.model),
            lambda: model_request(request),
            lambda: handler(request),
            _encode_response,
            _response_decoder(request),
        )
        return answered

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
        made = stand_in(self.rt, tool.name, self.effects, lambda: signature_of(tool))
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
) -> Invocation:
    """The agent's own async tool call, as the stand-in runs it: awaited by an
    AsyncRuntime; on a sync runtime (whose handler runs in a worker thread) run on the
    agent's event loop and waited for."""

    async def call(given: dict[str, Any]) -> Any:
        return _recorded(await handler(on(request, given)))

    if isinstance(rt, AsyncRuntime):
        return call
    loop = asyncio.get_running_loop()
    return lambda given: asyncio.run_coroutine_threadsafe(call(given), loop).result()


def on(request: ToolCallRequest, given: dict[str, Any]) -> ToolCallRequest:
    """The agent's tool call with the arguments dar runs it on (a person's edit, approved,
    differs from what the model sent)."""
    if given == request.tool_call["args"]:
        return request
    return request.override(tool_call={**request.tool_call, "args": given})


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
    """The model reads the agent tool's own content (recorded as it was, so a cached call
    reads the same); a refusal or failure as dar words it."""
    reply = result.for_model()
    own = result.ok and isinstance(result.output, (str, list))
    content = result.output if own else reply.text
    edited = edit_note(result)  # news to the model: the call ran on a person's arguments
    if own and edited is not None:
        content = f"{edited} Result: {result.output}"
    return ToolMessage(
        content,
        tool_call_id=request.tool_call["id"],
        name=request.tool_call["name"],
        status="error" if reply.is_error else "success",
    )


# --- the agent's own tools' arguments ---------------------------------------------------------


def signature_of(tool: BaseTool) -> Signature | None:
    """The agent tool's arguments as dar validates an owned tool's (strictly, as JSON,
    before the rules): its ``args_schema`` as the model is shown it (``tool_call_schema``:
    without injected arguments), a pydantic model or a JSON Schema."""
    schema = tool.tool_call_schema
    if isinstance(schema, dict):
        return SchemaSignature("", _ANY_OBJECT, {}, None, schema)
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        return None  # a pydantic v1 model: LangChain checks it when the tool runs
    strict = create_model(schema.__name__, __base__=schema)
    strict.model_config["strict"] = True
    strict.model_rebuild(force=True)
    names = {field.alias or n: n for n, field in strict.model_fields.items()}
    return Signature("", strict, names, None)


_ANY_OBJECT = create_model("arguments", __config__=ConfigDict(extra="allow"))


@dataclasses.dataclass(frozen=True, eq=False)
class SchemaSignature(Signature):
    """A JSON Schema's arguments, checked by `dar.integrations._schema`."""

    json_schema: dict[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self, canonical: str, *, coerce: bool = False) -> dict[str, Any]:
        arguments: dict[str, Any] = json.loads(canonical)
        problems = misfits(self.json_schema, arguments)
        if problems:
            raise ArgumentError(problems)
        return arguments


# --- durable model calls ---------------------------------------------------------------------

#: What a message holds of one run (its id, transport metadata), not of the conversation.
_MESSAGE_BOOKKEEPING = ("id", "response_metadata", "usage_metadata")
#: Settings that change how a request travels, not what the model answers.
_TRANSPORT = ("timeout", "request_timeout", "max_retries", "extra_headers", "default_headers")


def model_name(model: Any) -> str:
    """The name a model's steps are journaled under: its model name, else its class."""
    for attribute in ("model_name", "model"):
        named = getattr(model, attribute, None)
        if isinstance(named, str) and named:
            return named
    return type(model).__name__


def model_request(request: ModelRequest) -> Any:
    """An agent's model call as the journal compares it: the system message, the messages
    (without ids and transport metadata), the tools, the tool choice, the response format
    and the settings (without transport options)."""
    system = request.system_message
    return jsonable(
        {
            "system": None if system is None else _message_json(system),
            "messages": [_message_json(m) for m in request.messages],
            "tools": [_tool_spec(t) for t in request.tools],
            "tool_choice": request.tool_choice,
            "response_format": _format_spec(request.response_format),
            "settings": without(dict(request.model_settings or {}), _TRANSPORT),
        }
    )


def _message_json(message: BaseMessage) -> Any:
    return without(jsonable(message), _MESSAGE_BOOKKEEPING)


def _tool_spec(tool: Any) -> Any:
    try:
        return convert_to_openai_tool(tool)
    except Exception:  # a provider's own tool dict: as given
        return jsonable(tool)


def _format_spec(response_format: Any) -> Any:
    if response_format is None:
        return None
    schema = getattr(response_format, "schema", response_format)
    described: Any = schema if isinstance(schema, dict) else _schema_of(schema)
    return {"strategy": type(response_format).__name__, "schema": described}


def _schema_of(schema: Any) -> Any:
    try:
        return TypeAdapter(schema).json_schema()
    except Exception:
        return getattr(schema, "__qualname__", type(schema).__name__)


def _tokens(messages: Sequence[BaseMessage]) -> int:
    total = 0
    for m in messages:
        usage = getattr(m, "usage_metadata", None)
        if isinstance(usage, dict):
            total += int(usage.get("total_tokens") or 0)
    return total


def _encode_response(response: ModelResponse) -> tuple[Any, int]:
    recorded = {
        "messages": messages_to_dict(response.result),
        "structured_response": jsonable(response.structured_response),
    }
    return recorded, _tokens(response.result)


def _response_decoder(request: ModelRequest) -> Callable[[Any], ModelResponse]:
    """Rebuild a recorded answer: its messages, and its structured response through the
    response format's schema (a dict schema's answer stays a dict)."""
    schema = getattr(request.response_format, "schema", None)

    def decode(recorded: Any) -> ModelResponse:
        structured = recorded.get("structured_response")
        if structured is not None and schema is not None and not isinstance(schema, dict):
            structured = TypeAdapter(schema).validate_python(structured)
        return ModelResponse(
            result=messages_from_dict(recorded["messages"]), structured_response=structured
        )

    return decode


def durable(chat_model: BaseChatModel) -> DurableChatModel:
    """A chat model whose calls are journaled in a durable run, for a loop of one's own
    (``durable(model).bind_tools(tools).invoke(messages)``); ``DarMiddleware`` does this for
    ``create_agent`` agents already (it leaves a durable model's calls to the model).

    Inside a run each call is a step whose request is the messages (without ids and
    transport metadata), the stop words and the options bound to the call (the tools, the
    tool choice); a recorded answer comes back as its ``ChatResult`` (messages, generation
    info, ``llm_output``). The wrapped model generates inside this model's call (its
    callbacks and traces are this model's; give a cache or a rate limiter to the durable
    model). Streaming gives the answer as one chunk. Outside a run the wrapped model
    answers as it would without dar."""
    if isinstance(chat_model, DurableChatModel):
        return chat_model
    return DurableChatModel(wrapped=chat_model)


class DurableChatModel(BaseChatModel):
    """A chat model whose calls are journaled in a durable run (see `durable`)."""

    wrapped: BaseChatModel

    @property
    def _llm_type(self) -> str:
        return f"durable-{self.wrapped._llm_type}"

    @property
    def model_name(self) -> str:
        return model_name(self.wrapped)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        # The wrapped model formats the tools; its bound options then reach _generate.
        bound = self.wrapped.bind_tools(tools, **kwargs)
        if isinstance(bound, RunnableBinding) and bound.bound is self.wrapped:
            return self.bind(**bound.kwargs)
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        def call() -> ChatResult:
            return self.wrapped._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

        answered: ChatResult = journaled(
            KIND, self.model_name, self._request(messages, stop, kwargs), call, _encode_result,
            _decode_result,
        )  # fmt: skip
        return answered

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        def call() -> Awaitable[ChatResult]:
            return self.wrapped._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)

        answered: ChatResult = await model_call(
            self.model_name,
            lambda: self._request(messages, stop, kwargs),
            call,
            _encode_result,
            _decode_result,
        )
        return answered

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None, options: dict[str, Any]
    ) -> Any:
        if running() is None:
            return None
        return jsonable(
            {
                "messages": [_message_json(m) for m in messages],
                "stop": stop,
                "options": without(options, _TRANSPORT),
            }
        )


def _encode_result(result: ChatResult) -> tuple[Any, int]:
    messages = [g.message for g in result.generations]
    recorded = {
        "messages": messages_to_dict(messages),
        "generation_info": [jsonable(g.generation_info) for g in result.generations],
        "llm_output": jsonable(result.llm_output),
    }
    return recorded, _tokens(messages)


def _decode_result(recorded: Any) -> ChatResult:
    messages = messages_from_dict(recorded["messages"])
    return ChatResult(
        generations=[
            ChatGeneration(message=m, generation_info=info)
            for m, info in zip(messages, recorded["generation_info"], strict=True)
        ],
        llm_output=recorded["llm_output"],
    )
