"""`dar mcp-proxy`: rules, idempotency and the event log in front of any MCP server.

The proxy is an MCP server to the agent and an MCP client to the upstream server. Every
``tools/call`` goes through `AsyncRuntime.call`, with the effect, key, window and rules the
local policy gives (`dar.mcp_proxy.policy`) and the tool's ``inputSchema`` as its signature
(`dar.mcp_proxy.arguments`), so a retried destructive call reaches the upstream once, a
refused one never, a rule never sees arguments that do not fit, and each is in the
hash-chained log. ``tools/list`` passes through with the description unchanged and the
annotations dar enforces; prompts and resources pass through untouched.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from mcp.server.lowlevel import Server
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    GetPromptRequestParams,
    GetPromptResult,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    TextContent,
    ToolAnnotations,
)
from mcp_types import Tool as MCPTool
from pydantic import ValidationError

from dar import __version__
from dar.context import CallInfo, current_call
from dar.dialects import mcp_annotations
from dar.effects import Effect, Status
from dar.errors import ConfigurationError
from dar.mcp_proxy.arguments import schema_signature
from dar.mcp_proxy.policy import (
    Decision,
    Hints,
    Policy,
    PolicyError,
    load_policy,
    lookup,
    signature,
)
from dar.mcp_proxy.upstream import (
    Upstream,
    UpstreamLost,
    UpstreamToolError,
    log,
    plain_text,
    running,
)
from dar.mcp_proxy.wire import pipes_usable
from dar.records import Result
from dar.rules import Deny, Rule, RuleContext
from dar.runtime.aio import AsyncRuntime
from dar.runtime.execute import STORE_ON_LOOP
from dar.store import Store
from dar.tools import Tool, check_tool_name, default_window

#: Where a client names its session: ``_meta["dar/correlation_id"]`` on the request.
META_KEY = "dar/correlation_id"
#: The name of the rule that refuses an irreversible tool the policy has no rule for.
UNRULED = "dar-proxy:irreversible-without-rule"

CorrelationFrom = Literal["meta", "session"]


@dataclass(frozen=True)
class State:
    """What the proxy enforces now: rebuilt when the policy or the upstream's tools change."""

    rt: AsyncRuntime
    listing: list[MCPTool]
    decisions: dict[str, Decision]
    policy: Policy
    generation: int

    def output_schema(self, tool: str) -> dict[str, Any] | None:
        """The ``outputSchema`` the agent was shown for ``tool`` (None: it has none)."""
        return next((t.output_schema for t in self.listing if t.name == tool), None)


@dataclass
class _Answered:
    """What the upstream answered the call in progress: its own ``isError`` result, to pass
    it on; or the output it returned, already checked against the tool's ``outputSchema``
    (by `ClientSession.validate_tool_result`), so the reply need not check it again."""

    failure: CallToolResult | None = None
    checked: dict[str, Any] | None = None


_answered: ContextVar[_Answered | None] = ContextVar("dar_proxy_answered", default=None)


@dataclass(frozen=True)
class Replied:
    """A call the runtime answered, with what its reply is made from (`reply`)."""

    result: Result
    failure: CallToolResult | None
    schema: dict[str, Any] | None
    checked: bool

    def model(self) -> CallToolResult:
        return reply(self.result, self.failure, self.schema, checked=self.checked)


def usable(listing: list[MCPTool]) -> list[MCPTool]:
    """The upstream's tools the proxy can serve. A name no log can hold (a NUL), or one
    listed twice, is left out with a line on stderr: one bad entry in a listing never takes
    the other tools down."""
    kept: dict[str, MCPTool] = {}
    for t in listing:
        try:
            check_tool_name(t.name)
        except ConfigurationError as exc:
            log(f"upstream tool left out: {exc}")
            continue
        if t.name in kept:
            log(f"upstream tool left out: {t.name!r} is listed twice")
            continue
        kept[t.name] = t
    return list(kept.values())


def hints_of(tool: MCPTool) -> Hints:
    a = tool.annotations
    if a is None:
        return Hints()
    return Hints(read_only=a.read_only_hint, destructive=a.destructive_hint)


def enforced(tool: MCPTool, effect: Effect) -> MCPTool:
    """The upstream's tool as listed to the agent: the annotations say what is enforced."""
    title = tool.annotations.title if tool.annotations is not None else None
    annotations = ToolAnnotations.model_validate({"title": title, **mcp_annotations(effect)})
    return tool.model_copy(update={"annotations": annotations})


def unruled_reason(tool: str, decision: Decision, policy: Policy) -> str:
    where = policy.path or "a policy file (dar mcp-proxy --policy FILE)"
    return (
        f"tool {tool!r} is irreversible ({decision.why}) and no rule applies to it: "
        f"add a @rule(applies_to={tool!r}) to `rules` in {where}, or name its effect in "
        "`effects` there"
    )


def unruled_rule(reasons: dict[str, str]) -> Rule:
    """Fail closed: an irreversible tool with no rule is listed, and every call refused."""

    def refuse(input: dict[str, Any], ctx: RuleContext) -> Deny:
        return Deny(reasons[ctx.tool])

    return Rule(name=UNRULED, check=refuse, applies_to=tuple(reasons))


@dataclass
class Proxy:
    """The policy, the upstream, and the runtime between them."""

    store: Store
    upstream: Upstream
    policy_path: Path | None = None
    correlation_from: CorrelationFrom = "meta"
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    policy: Policy = field(default_factory=Policy)
    _state: State | None = None
    _seen: tuple[int, int] | None = None

    def load(self) -> None:
        """Read the policy file at start-up: an unusable policy stops the proxy."""
        if self.policy_path is not None:
            self._seen = signature(self.policy_path)
            self.policy = load_policy(self.policy_path)

    def build(self, policy: Policy) -> State:
        """A runtime registering every upstream tool under ``policy``, everything it would
        otherwise compile at a tool's first call compiled now: an unusable policy raises
        `PolicyError` here, before it is put in force."""
        server = self.upstream.name
        listing = usable(self.upstream.tools)
        decisions = {t.name: policy.decide(t.name, hints_of(t), server) for t in listing}
        unruled = {
            name: unruled_reason(name, d, policy)
            for name, d in decisions.items()
            if d.effect is Effect.IRREVERSIBLE
            and not any(r.applies(name, d.effect) for r in policy.rules)
        }
        rules = [*policy.rules, unruled_rule(unruled)] if unruled else list(policy.rules)
        tools = [self._tool(t, decisions[t.name], policy) for t in listing]
        where = policy.path or "the policy"
        try:
            rt = AsyncRuntime(self.store, tools=tools, rules=rules)
        except (ConfigurationError, TypeError, ValueError) as exc:
            raise PolicyError(f"{where}: {exc}") from exc
        return State(rt, listing, decisions, policy, self.upstream.generation)

    def _tool(self, upstream: MCPTool, decision: Decision, policy: Policy) -> Tool[Any]:
        name = upstream.name

        async def handler(**arguments: Any) -> dict[str, Any]:
            return await self._call_upstream(name, arguments)

        named, window = policy.window_for(name)
        tool: Tool[Any] = Tool(
            name=name,
            handler=handler,
            effect=decision.effect,
            key=policy.key_for(name),
            window=window if named else default_window(decision.effect),
            redact=policy.redact_for(name),
            description=upstream.description,
            guards=policy.guards_for(name),
        )
        # The upstream's inputSchema is the tool's signature: the runtime refuses a misfit
        # before any rule sees it, as for a tool of dar's own.
        tool.__dict__["signature"] = schema_signature(name, handler, upstream.input_schema)
        try:
            tool.redactor  # noqa: B018 -- compiled at the first call otherwise
        except Exception as exc:
            found = lookup(policy.redact, name)
            entry = f"redact[{found[0]!r}]" if found is not None else "redact"
            raise PolicyError(f"{policy.path or 'the policy'}: {entry}: {exc}") from exc
        return tool

    async def _call_upstream(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        box = _answered.get()
        try:
            output = await self.upstream.call(name, arguments, forwarded_meta(current_call()))
        except UpstreamToolError as exc:
            if box is not None:
                box.failure = exc.result
            raise
        if box is not None:
            box.checked = output
        return output

    async def state(self) -> State:
        """What to enforce for this request: reloads an edited policy (keeping the old one
        when the new one is unusable) and follows a restarted upstream's tools."""
        await self.upstream.session()  # waits out a restart in progress
        self._reload()
        state = self._state
        if state is None or state.generation != self.upstream.generation:
            state = self._state = self.build(self.policy)
        return state

    def _reload(self) -> None:
        """One ``stat`` per request: cheaper than a watcher, and never a stale verdict."""
        if self.policy_path is None:
            return
        seen = signature(self.policy_path)
        if seen == self._seen:
            return
        self._seen = seen
        try:
            policy = load_policy(self.policy_path)
            self._state = self.build(policy)
        except (PolicyError, ConfigurationError) as exc:
            log(f"policy not reloaded, the previous one stays in force: {exc}")
            return
        self.policy = policy
        log(f"policy reloaded from {self.policy_path}")

    def correlation_id(self, meta: Mapping[str, Any] | None, session: Any = None) -> str:
        """``_meta["dar/correlation_id"]`` when the client sends one (and it is heeded),
        else the MCP session id (``session``: the HTTP transport's; one per proxy process
        on stdio)."""
        if self.correlation_from == "meta" and meta:
            given = meta.get(META_KEY)
            if isinstance(given, str) and given:
                return given
        return session if isinstance(session, str) and session else self.session_id

    # --- MCP handlers ---------------------------------------------------------------------

    async def list_tools(self, ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
        state = await self.state()
        return ListToolsResult(
            tools=[enforced(t, state.decisions[t.name].effect) for t in state.listing]
        )

    async def call_tool(self, ctx: Any, params: CallToolRequestParams) -> CallToolResult:
        headers = getattr(ctx.request, "headers", None)
        session = headers.get("mcp-session-id") if headers is not None else None
        return await self.answer(params.name, params.arguments or {}, ctx.meta, session)

    async def answer(
        self,
        name: str,
        arguments: dict[str, Any],
        meta: Mapping[str, Any] | None,
        session: Any = None,
    ) -> CallToolResult:
        """The answer to one ``tools/call``, as the SDK's model."""
        done = await self._run(name, arguments, meta, session)
        return done if isinstance(done, CallToolResult) else done.model()

    async def fast_answer(
        self, name: str, arguments: dict[str, Any], meta: Mapping[str, Any] | None
    ) -> CallToolResult | dict[str, Any]:
        """`answer` for the fast path: the usual answer of an executed or cached call as the
        JSON object the SDK would write for it, no model built (`plain_reply`)."""
        done = await self._run(name, arguments, meta)
        if isinstance(done, CallToolResult):
            return done
        plain = plain_reply(done.result, done.schema, checked=done.checked)
        return plain if plain is not None else done.model()

    async def _run(
        self,
        name: str,
        arguments: dict[str, Any],
        meta: Mapping[str, Any] | None,
        session: Any = None,
    ) -> Replied | CallToolResult:
        state = await self.state()
        cid = self.correlation_id(meta, session)
        box = _Answered()
        token = _answered.set(box)
        try:
            result = await state.rt.call(name, arguments, correlation_id=cid)
        except UpstreamLost as lost:
            return await self._lost(state, name, cid, str(lost))
        finally:
            _answered.reset(token)
        checked = box.checked is not None and result.output is box.checked
        return Replied(result, box.failure, state.output_schema(name), checked)

    async def _lost(self, state: State, name: str, cid: str, why: str) -> CallToolResult:
        """The upstream died mid-call: the log holds the call as cancelled, and an external
        effect's key as indeterminate."""
        rows = await state.rt.events(correlation_id=cid, tool=name, status="cancelled")
        key = rows[-1].idempotency_key if rows else None
        decision = state.decisions.get(name)
        if decision is not None and decision.effect.blind_retry_safe:
            text = f"{why}. The call did not finish; calling again runs it again."
            return _text(text, {"dar/status": str(Status.CANCELLED), "dar/key": key})
        text = (
            f"{why}: whether it took effect is unknown. An operator must decide "
            f"(dar resolve {key} --executed/--not-executed); do not retry or rephrase this call."
        )
        return _text(text, {"dar/status": str(Status.INDETERMINATE), "dar/key": key})

    async def list_prompts(
        self, ctx: Any, params: PaginatedRequestParams | None
    ) -> ListPromptsResult:
        return await (await self.upstream.session()).list_prompts(params=params)

    async def get_prompt(self, ctx: Any, params: GetPromptRequestParams) -> GetPromptResult:
        session = await self.upstream.session()
        return await session.get_prompt(params.name, params.arguments)

    async def list_resources(
        self, ctx: Any, params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        return await (await self.upstream.session()).list_resources(params=params)

    async def list_resource_templates(
        self, ctx: Any, params: PaginatedRequestParams | None
    ) -> ListResourceTemplatesResult:
        return await (await self.upstream.session()).list_resource_templates(params=params)

    async def read_resource(
        self, ctx: Any, params: ReadResourceRequestParams
    ) -> ReadResourceResult:
        return await (await self.upstream.session()).read_resource(str(params.uri))

    def server(self) -> Server[Any]:
        """The MCP server the agent talks to: tools always; prompts and resources when the
        upstream has them."""
        server: Server[Any] = Server(
            f"dar-proxy:{self.upstream.name}",
            version=__version__,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )
        caps = self.upstream.capabilities
        if caps is not None and caps.prompts is not None:
            server.add_request_handler("prompts/list", PaginatedRequestParams, self.list_prompts)
            server.add_request_handler("prompts/get", GetPromptRequestParams, self.get_prompt)
        if caps is not None and caps.resources is not None:
            server.add_request_handler(
                "resources/list", PaginatedRequestParams, self.list_resources
            )
            server.add_request_handler(
                "resources/templates/list", PaginatedRequestParams, self.list_resource_templates
            )
            server.add_request_handler(
                "resources/read", ReadResourceRequestParams, self.read_resource
            )
        return server


def forwarded_meta(info: CallInfo | None) -> dict[str, Any] | None:
    """What the upstream is told of the call, in its request's ``_meta``: the key to
    deduplicate by (`dar.current_call`'s; none for a read), the call's first row in the
    log, its session and its attempt."""
    if info is None:
        return None
    meta: dict[str, Any] = {
        "dar/event_id": info.event_id,
        "dar/correlation_id": info.correlation_id,
        "dar/attempt": info.attempt,
    }
    if info.key is not None:
        meta["dar/idempotency_key"] = info.key
    return meta


def reply(
    result: Result,
    upstream_error: CallToolResult | None,
    output_schema: dict[str, Any] | None = None,
    *,
    checked: bool = False,
) -> CallToolResult:
    """The agent's answer: the upstream's own result when the tool ran (now or earlier),
    its own error when it failed, else what dar says about the call.

    A tool listed with an ``outputSchema`` answers structured content that fits it (the
    official client rejects anything else), also when the answer comes from a record an
    operator wrote (``dar resolve KEY --executed --output JSON``); a record that cannot be
    made to fit is answered as an error saying why, never as an invalid result
    (``checked``: the output is one the upstream just returned and the SDK checked)."""
    meta: dict[str, Any] = {"dar/status": str(result.status), "dar/key": result.key}
    if result.ok and output_schema is not None:
        return typed_reply(result, output_schema, meta, checked=checked)
    if result.ok and isinstance(result.output, dict):
        try:
            rebuilt = CallToolResult.model_validate(result.output)
        except ValidationError:
            rebuilt = None  # a redacted or foreign record: say so in dar's words below
        if rebuilt is not None:
            return rebuilt.model_copy(update={"meta": {**(rebuilt.meta or {}), **meta}})
    if result.status is Status.FAILED and upstream_error is not None:
        return upstream_error.model_copy(update={"meta": {**(upstream_error.meta or {}), **meta}})
    said = result.for_model()
    return _text(said.text, meta, is_error=said.is_error)


def plain_reply(
    result: Result, output_schema: dict[str, Any] | None, *, checked: bool
) -> dict[str, Any] | None:
    """The answer `reply` gives an executed or cached call whose record is a tool result of
    text content (and structured content, when the tool has an ``outputSchema`` it fits),
    as the JSON object the SDK writes for it on every handshake protocol version, built
    without a model: validating the record into the SDK's models and dumping it again costs
    more than the rest of the proxy's own work on a call. None for any other answer (`reply`
    gives it). tests/mcp_proxy pins the bytes to `reply`'s."""
    output = result.output
    if not result.ok or type(output) is not dict or not PLAIN_MEMBERS.issuperset(output):
        return None
    content = output.get("content")
    if type(content) is not list or not all(map(plain_text, content)):
        return None
    structured = output.get("structuredContent")
    if structured is not None and type(structured) is not dict:
        return None
    if output_schema is not None and (
        structured is None or (not checked and misfit(structured, output_schema) is not None)
    ):
        return None  # `typed_reply` makes it fit, or says why it does not
    answer: dict[str, Any] = {
        "_meta": {"dar/status": str(result.status), "dar/key": result.key},
        "content": [{"text": c["text"], "type": "text"} for c in content],
        "isError": False,
    }
    if structured is not None:
        answer["structuredContent"] = structured
    return answer


#: The members of a record `plain_reply` answers (as `recorded` writes them).
PLAIN_MEMBERS = frozenset({"content", "structuredContent"})


def typed_reply(
    result: Result, schema: dict[str, Any], meta: dict[str, Any], *, checked: bool = False
) -> CallToolResult:
    """The recorded output as a result whose structured content fits ``schema``, else an
    ``isError`` result saying what does not fit."""
    rebuilt, why = structured(result.output)
    if rebuilt is not None:
        fits = checked or rebuilt.is_error
        unfit = None if fits else misfit(rebuilt.structured_content, schema)
        if unfit is None:
            return rebuilt.model_copy(update={"meta": {**(rebuilt.meta or {}), **meta}})
        why = unfit
    recorded = json.dumps(result.output, ensure_ascii=False, default=str)
    if len(recorded) > SHOWN:
        recorded = recorded[: SHOWN - 1] + "…"
    text = (
        f"The tool ran (status {result.status}: calling again answers the same record, it "
        f"does not run again), but its recorded output does not fit this tool's "
        f"outputSchema: {why}. The recorded output: {recorded}"
    )
    return _text(text, meta)


#: How much of a recorded output an error answer quotes.
SHOWN = 2000


def structured(output: Any) -> tuple[CallToolResult | None, str]:
    """A tool result with structured content made from a recorded output, or why none can
    be made. A record may be a tool result (``content`` and maybe ``structuredContent``;
    without it, its text must be JSON), a bare JSON text, or the structured value itself."""
    if output is None:
        return None, "the record holds no output (dar resolve --executed --output JSON)"
    if isinstance(output, dict) and "content" in output:
        try:
            record = CallToolResult.model_validate(output)
        except ValidationError:
            record = None  # an object of the tool's own that has a "content" member
        if record is not None:
            if record.structured_content is not None or record.is_error:
                return record, ""  # (an error result is not checked against the schema)
            said = "".join(c.text for c in record.content if isinstance(c, TextContent))
            parsed, why = _json_of(
                said, "the recorded result has no structuredContent, and its text"
            )
            if why:
                return None, why
            return record.model_copy(update={"structured_content": parsed}), ""
    if isinstance(output, str):
        parsed, why = _json_of(output, "the recorded output (a text)")
        if why:
            return None, why
        return _with(output, parsed), ""
    return _with(json.dumps(output, ensure_ascii=False), output), ""


def _json_of(text: str, what: str) -> tuple[Any, str]:
    """``text`` parsed as JSON, or why it is not (``what`` names the text)."""
    if not text.strip():
        return None, f"{what} is empty"
    try:
        return json.loads(text), ""
    except ValueError:
        return None, f"{what} is not JSON"


def _with(text: str, value: Any) -> CallToolResult:
    return CallToolResult.model_validate(
        {"content": [TextContent(type="text", text=text)], "structuredContent": value}
    )


def misfit(value: Any, schema: dict[str, Any]) -> str | None:
    """Why ``value`` does not fit the JSON Schema ``schema`` (its first error, where, and
    the schema path that fails), or None when it fits."""
    first_error = _checker(json.dumps(schema, sort_keys=True))
    if isinstance(first_error, str):
        return first_error
    from referencing.exceptions import Unresolvable

    try:
        error = first_error(value)
    except Unresolvable as exc:
        return f"the outputSchema has a $ref that does not resolve: {exc}"
    if error is None:
        return None
    where = "/".join(str(p) for p in error.schema_path) or "(the root)"
    return f"at {error.json_path}: {error.message} (outputSchema path {where})"


@lru_cache(maxsize=256)
def _checker(schema_text: str) -> Callable[[Any], Any] | str:
    """The first error (as the official client picks it) of a value against a schema,
    compiled once (compiling costs far more than validating), or why the schema is not
    one. ``$ref``s resolve only within the schema, as in the client."""
    from jsonschema.exceptions import SchemaError, best_match  # type: ignore[import-untyped]
    from jsonschema.validators import validator_for  # type: ignore[import-untyped]
    from referencing import Registry

    schema = json.loads(schema_text)
    cls = validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        return f"the outputSchema is not a valid JSON Schema: {exc.message}"
    validator = cls(schema, registry=Registry())

    def first_error(value: Any) -> Any:
        return best_match(validator.iter_errors(value))

    return first_error


def _text(text: str, meta: dict[str, Any], *, is_error: bool = True) -> CallToolResult:
    return CallToolResult.model_validate(
        {"content": [TextContent(type="text", text=text)], "isError": is_error, "_meta": meta}
    )


# --- running it --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What `dar mcp-proxy` was asked to do."""

    db: str
    policy: Path | None
    correlation_from: CorrelationFrom
    command: list[str]
    upstream_url: str | None
    http: tuple[str, int] | None
    #: ``tools/call`` at the JSON-RPC level on stdio (False: through the SDK's objects).
    fast: bool = True


def upstream_of(options: Options) -> Upstream:
    from dar.mcp_proxy.upstream import http_upstream, stdio_pipes, stdio_upstream

    if options.upstream_url is not None:
        return Upstream(http_upstream(options.upstream_url))
    if not options.command:
        raise ConfigurationError("name the upstream server: -- CMD [ARGS...] or --upstream-url")
    # The proxy's own pipes stop the server's process group the POSIX way; elsewhere the
    # SDK's transport (and its Windows job objects) runs the server.
    own_pipes = options.fast and os.name == "posix"
    raw = stdio_pipes(options.command) if own_pipes else None
    return Upstream(stdio_upstream(options.command), raw=raw)


async def serve_proxy(options: Options) -> None:
    """Run the proxy until the agent disconnects (stdio) or it is stopped (HTTP)."""
    from dar.store import store_of

    proxy = Proxy(
        store_of(options.db),
        upstream_of(options),
        options.policy,
        options.correlation_from,
    )
    proxy.load()
    async with running(proxy.upstream):
        server = proxy.server()
        if options.http is None:
            log(f"serving on stdio; session {proxy.session_id}")
            if options.fast and pipes_usable():
                await _serve_stdio_fast(proxy, server)
            else:
                await _serve_stdio(server)
        else:
            await _serve_http(server, *options.http)


async def _serve_stdio(server: Server[Any]) -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


async def _serve_stdio_fast(proxy: Proxy, server: Server[Any]) -> None:
    """Serve the one agent on stdio; the loop is the agent's alone, so the runtime's store
    operations run on it (`STORE_ON_LOOP`), without a thread hop each."""
    from dar.mcp_proxy.wire import Wire, claimed_stdio

    async def serve_sdk(read: Any, write: Any) -> None:
        await server.run(read, write, server.create_initialization_options())

    token = STORE_ON_LOOP.set(True)
    try:
        async with claimed_stdio() as (reader, writer):
            await Wire(reader, writer).serve(proxy.fast_answer, serve_sdk)
    finally:
        STORE_ON_LOOP.reset(token)


async def _serve_http(server: Server[Any], host: str, port: int) -> None:
    import uvicorn

    app = server.streamable_http_app(host=host)
    log(f"serving streamable HTTP on http://{host}:{port}/mcp")
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    await uvicorn.Server(config).serve()


async def check(options: Options) -> list[tuple[str, Decision, list[str]]]:
    """Each upstream tool with the effect it would get and the rules that would judge it."""
    policy = load_policy(options.policy) if options.policy is not None else Policy()
    upstream = upstream_of(options)
    async with running(upstream):
        rows = []
        for t in upstream.tools:
            decision = policy.decide(t.name, hints_of(t), upstream.name)
            rules = [r.name for r in policy.rules if r.applies(t.name, decision.effect)]
            if decision.effect is Effect.IRREVERSIBLE and not rules:
                rules = [f"{UNRULED} (every call refused)"]
            rows.append((t.name, decision, rules))
    return rows
