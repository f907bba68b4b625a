"""`dar mcp-proxy`: rules, idempotency and the event log in front of any MCP server.

The proxy is an MCP server to the agent and an MCP client to the upstream server. Every
``tools/call`` goes through `AsyncRuntime.call`, with the effect, key, window and rules the
local policy gives (`dar.mcp_proxy.policy`), so a retried destructive call reaches the upstream
once, a refused one never, and each is in the hash-chained log. ``tools/list`` passes
through with the description unchanged and the annotations dar enforces; prompts and
resources pass through untouched.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
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
from dar.dialects import mcp_annotations
from dar.effects import Effect, Status
from dar.errors import ConfigurationError
from dar.mcp_proxy.policy import (
    Decision,
    Hints,
    Policy,
    PolicyError,
    load_policy,
    lookup,
    signature,
)
from dar.mcp_proxy.upstream import Upstream, UpstreamLost, UpstreamToolError, log, running
from dar.records import Result
from dar.rules import Deny, Rule, RuleContext
from dar.runtime.aio import AsyncRuntime
from dar.store import Store
from dar.tools import Tool, default_window

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


@dataclass
class _Failure:
    """The upstream's own ``isError`` result of the call in progress, to pass it on."""

    result: CallToolResult | None = None


_failure: ContextVar[_Failure | None] = ContextVar("dar_proxy_failure", default=None)


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
        decisions = {
            t.name: policy.decide(t.name, hints_of(t), server) for t in self.upstream.tools
        }
        unruled = {
            name: unruled_reason(name, d, policy)
            for name, d in decisions.items()
            if d.effect is Effect.IRREVERSIBLE
            and not any(r.applies(name, d.effect) for r in policy.rules)
        }
        rules = [*policy.rules, unruled_rule(unruled)] if unruled else list(policy.rules)
        tools = [self._tool(t, decisions[t.name], policy) for t in self.upstream.tools]
        where = policy.path or "the policy"
        try:
            rt = AsyncRuntime(self.store, tools=tools, rules=rules)
        except (ConfigurationError, TypeError, ValueError) as exc:
            raise PolicyError(f"{where}: {exc}") from exc
        return State(rt, list(self.upstream.tools), decisions, policy, self.upstream.generation)

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
        )
        try:
            tool.redactor  # noqa: B018 -- compiled at the first call otherwise
        except Exception as exc:
            found = lookup(policy.redact, name)
            entry = f"redact[{found[0]!r}]" if found is not None else "redact"
            raise PolicyError(f"{policy.path or 'the policy'}: {entry}: {exc}") from exc
        return tool

    async def _call_upstream(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.upstream.call(name, arguments)
        except UpstreamToolError as exc:
            box = _failure.get()
            if box is not None:
                box.result = exc.result
            raise

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

    def correlation_id(self, ctx: Any) -> str:
        """``_meta["dar/correlation_id"]`` when the client sends one (and it is heeded),
        else the MCP session id (one per proxy process on stdio)."""
        meta: Mapping[str, Any] | None = ctx.meta
        if self.correlation_from == "meta" and meta:
            given = meta.get(META_KEY)
            if isinstance(given, str) and given:
                return given
        headers = getattr(ctx.request, "headers", None)
        session = headers.get("mcp-session-id") if headers is not None else None
        return session if isinstance(session, str) and session else self.session_id

    # --- MCP handlers ---------------------------------------------------------------------

    async def list_tools(self, ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
        state = await self.state()
        return ListToolsResult(
            tools=[enforced(t, state.decisions[t.name].effect) for t in state.listing]
        )

    async def call_tool(self, ctx: Any, params: CallToolRequestParams) -> CallToolResult:
        state = await self.state()
        cid = self.correlation_id(ctx)
        box = _Failure()
        token = _failure.set(box)
        try:
            result = await state.rt.call(params.name, params.arguments or {}, correlation_id=cid)
        except UpstreamLost as lost:
            return await self._lost(state, params.name, cid, str(lost))
        finally:
            _failure.reset(token)
        return reply(result, box.result)

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


def reply(result: Result, upstream_error: CallToolResult | None) -> CallToolResult:
    """The agent's answer: the upstream's own result when the tool ran (now or earlier),
    its own error when it failed, else what dar says about the call."""
    meta: dict[str, Any] = {"dar/status": str(result.status), "dar/key": result.key}
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


def upstream_of(options: Options) -> Upstream:
    from dar.mcp_proxy.upstream import http_upstream, stdio_upstream

    if options.upstream_url is not None:
        return Upstream(http_upstream(options.upstream_url))
    if not options.command:
        raise ConfigurationError("name the upstream server: -- CMD [ARGS...] or --upstream-url")
    return Upstream(stdio_upstream(options.command))


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
            await _serve_stdio(server)
        else:
            await _serve_http(server, *options.http)


async def _serve_stdio(server: Server[Any]) -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


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
