"""The proxy's side of the upstream MCP server: one live session, restarted when it dies.

A call in flight when the connection drops may or may not have taken effect, so it is
reported as `UpstreamLost` — a `BaseException`, so the runtime records the call as
interrupted and, for an external effect, leaves its key `indeterminate` for an operator
instead of releasing it for a silent retry.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any, NamedTuple, cast

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    REQUEST_TIMEOUT,
    CallToolResult,
    ErrorData,
    Implementation,
    RequestParamsMeta,
)
from mcp_types import Tool as MCPTool
from pydantic_core import to_json

from dar.errors import DarError
from dar.mcp_proxy.pipes import Intercept, Piped, SendLine, piped
from dar.terminal import safe

#: Errors that leave the outcome of a call unknown (the upstream may have acted).
LOST_CODES = (CONNECTION_CLOSED, REQUEST_TIMEOUT)

#: How long to wait for the upstream to start and answer `initialize`.
START_TIMEOUT = 30.0
#: What a raw call in flight is answered when the connection closes (the SDK's words).
CLOSED = ErrorData(code=CONNECTION_CLOSED, message="Connection closed")

Streams = tuple[Any, Any]
Connect = Callable[[], AbstractAsyncContextManager[Streams]]
#: Opens the upstream's pipes, handing each line it writes to the intercept first.
RawConnect = Callable[[Intercept], AbstractAsyncContextManager[Piped]]


class UpstreamLost(BaseException):
    """The upstream went away while a call ran: whether it acted is unknown."""


class UpstreamToolError(Exception):
    """The upstream answered ``isError: true``: the call failed, with this result."""

    def __init__(self, result: CallToolResult) -> None:
        text = " ".join(getattr(c, "text", "") for c in result.content).strip()
        super().__init__(text or "the upstream tool reported an error")
        self.result = result


def log(message: str) -> None:
    """Tell the operator. Never stdout: on the stdio transport it is the protocol. Made
    safe for a terminal: a message may quote what the upstream sent (a tool's name)."""
    print(f"dar mcp-proxy: {safe(message)}", file=sys.stderr, flush=True)


def leaf(exc: BaseException) -> str:
    """The first real error inside (nested) exception groups, as one line."""
    inner = getattr(exc, "exceptions", None)
    while inner:
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    return f"{type(exc).__name__}: {exc}"


def stdio_upstream(command: list[str]) -> Connect:
    # The whole environment: a client's MCP config sets the upstream's tokens on the proxy.
    params = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    return lambda: stdio_client(params, errlog=sys.stderr)


def stdio_pipes(command: list[str]) -> RawConnect:
    """The upstream on stdio, its pipes the proxy's own (`dar.mcp_proxy.pipes`)."""
    return lambda intercept: piped(command, dict(os.environ), intercept)


def http_upstream(url: str) -> Connect:
    from mcp.client.streamable_http import streamable_http_client

    return lambda: streamable_http_client(url)


def recorded(result: CallToolResult) -> dict[str, Any]:
    """The upstream's result as the log records it: content and structured content."""
    dumped: dict[str, Any] = result.model_dump(
        mode="json", by_alias=True, exclude_none=True, exclude={"is_error", "result_type"}
    )
    return dumped


@asynccontextmanager
async def running(upstream: Upstream) -> AsyncIterator[None]:
    """The upstream kept alive around the block; one that cannot start raises `DarError`."""
    async with anyio.create_task_group() as tg:
        await tg.start(upstream.run)
        failure = upstream.failure
        if failure is None:
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
    if failure is not None:
        raise DarError(failure)


class Answered(NamedTuple):
    """The upstream's result to a raw call, and whether `plain_record` may read it."""

    result: Any
    plain: bool


#: A raw ``tools/call`` in flight: its answer (a result, or an error) once it comes.
Waiter = asyncio.Future[Answered | ErrorData]


def settle(waiter: Waiter, outcome: Answered | ErrorData) -> None:
    if not waiter.done():
        waiter.set_result(outcome)


class Upstream:
    """The upstream server: started on demand, restarted after it dies.

    With ``raw`` (the upstream's pipes, `stdio_pipes`), a ``tools/call`` is written to
    them as a JSON-RPC request of the proxy's own (ids ``dar-N``, which the SDK's session
    never uses) and its answer taken off them before the session sees it, as plain JSON:
    the SDK's request machinery and transport are skipped, its checks of the result are
    not (`plain_record` makes them on the usual result, `ClientSession.validate_tool_result`
    on any other)."""

    def __init__(self, connect: Connect, *, raw: RawConnect | None = None) -> None:
        self._connect = connect
        self._raw = raw
        self._send_line: SendLine | None = None
        self._pending: dict[str, Waiter] = {}
        self._fits: dict[str, Callable[[Any], bool]] = {}
        self._sent = 0
        self._session: ClientSession | None = None
        self._ready = anyio.Event()
        self._dead = anyio.Event()
        self.info: Implementation | None = None
        self.capabilities: Any = None
        self.tools: list[MCPTool] = []
        self.generation = 0
        self.failure: str | None = None

    @property
    def name(self) -> str:
        return self.info.name if self.info is not None else ""

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep a session open; started with ``TaskGroup.start`` it returns once the first
        session is ready, or ends with ``failure`` saying why the upstream did not start."""
        started = False
        while True:
            try:
                async with self._open() as session:
                    await self._adopt(session)
                    if not started:
                        started = True
                        task_status.started()
                    await self._dead.wait()
            except Exception as exc:
                if not started:
                    self.failure = f"the upstream server did not start: {leaf(exc)}"
                    task_status.started()
                    return
                log(f"the upstream server failed: {leaf(exc)}")
                await anyio.sleep(0.5)
            self._lose()
            self._dead = anyio.Event()
            log("restarting the upstream server")

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[ClientSession]:
        """A session whose read side is watched: when the upstream's output ends (it
        exited), the session is marked dead at once, not at the next call."""
        async with self._streams() as (read, write):
            send, watched = anyio.create_memory_object_stream[SessionMessage | Exception](0)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch, read, send)
                async with ClientSession(watched, write) as session:
                    with anyio.fail_after(START_TIMEOUT):
                        init = await session.initialize()
                    self.info, self.capabilities = init.server_info, init.capabilities
                    yield session
                tg.cancel_scope.cancel()

    @asynccontextmanager
    async def _streams(self) -> AsyncIterator[Streams]:
        """The session's streams: the SDK's transport, or the proxy's own pipes."""
        if self._raw is None:
            async with self._connect() as streams:
                yield streams
            return
        async with self._raw(self._answers_raw_call) as (read, write, send_line):
            self._send_line = send_line
            try:
                yield read, write
            finally:
                self._send_line = None

    async def _watch(self, read: Any, send: Any) -> None:
        async with send:
            async for message in read:
                await send.send(message)
        self._lose()

    def _answers_raw_call(self, line: bytes) -> bool:
        """Settle the raw call ``line`` answers, if it answers one."""
        if not self._pending:
            return False
        try:
            message = json.loads(line)
        except ValueError:
            return False
        rid = message.get("id") if isinstance(message, dict) else None
        waiter = self._pending.get(rid) if isinstance(rid, str) else None
        if waiter is None or ("result" in message) == ("error" in message):
            return False
        if "result" in message:
            settle(waiter, Answered(message["result"], plain_line(line)))
        else:
            settle(waiter, _error_data(message["error"]))
        return True

    def _lose(self) -> None:
        """The session is gone: later calls wait for the next one, none is sent to it."""
        if self._session is not None:
            self._session, self._ready = None, anyio.Event()
        for waiter in self._pending.values():
            settle(waiter, CLOSED)
        self._dead.set()

    async def _adopt(self, session: ClientSession) -> None:
        tools: list[MCPTool] = []
        cursor: str | None = None
        while True:
            page = await session.list_tools(params=_page(cursor))
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        self.tools = tools
        self._fits = {}
        self.generation += 1
        self._session = session
        self._ready.set()

    async def session(self) -> ClientSession:
        """The live session, waiting for a restart to finish if one is under way."""
        if self._session is not None:  # the usual case: no cancel scope to set up per call
            return self._session
        with anyio.fail_after(START_TIMEOUT):
            await self._ready.wait()
        assert self._session is not None
        return self._session

    async def call(
        self, name: str, arguments: dict[str, Any], meta: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Call the upstream tool, with ``meta`` as the request's ``_meta``. Returns its
        recorded result; raises `UpstreamToolError` for ``isError``, `UpstreamLost` when
        the outcome is unknown."""
        session = await self.session()
        try:
            # The MCP types declare no keys of dar's; ``_meta`` is an open map.
            sent = cast("RequestParamsMeta | None", meta)
            if self._raw is not None:
                result = await self._raw_call(session, name, arguments, meta)
            else:
                result = await session.call_tool(name, arguments, meta=sent)
        except MCPError as exc:
            if exc.code not in LOST_CODES:
                raise
            self._lose()
            raise UpstreamLost(f"the upstream server went away mid-call ({exc.message})") from exc
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
            self._lose()
            raise UpstreamLost(f"the upstream connection failed: {exc!r}") from exc
        if isinstance(result, dict):
            return result
        if not isinstance(result, CallToolResult):
            raise DarError(f"the upstream answered {type(result).__name__}, not a tool result")
        if result.is_error:
            raise UpstreamToolError(result)
        return recorded(result)

    async def _raw_call(
        self,
        session: ClientSession,
        name: str,
        arguments: dict[str, Any],
        meta: dict[str, Any] | None,
    ) -> CallToolResult | dict[str, Any]:
        """``tools/call`` as one JSON-RPC request line on the pipes; cancelled, it tells the
        upstream (``notifications/cancelled``), as the SDK's session does. The usual result
        comes back as recorded (`plain_record`), any other as the SDK's checked model."""
        send_line = self._send_line
        if send_line is None:
            raise anyio.ClosedResourceError  # the pipes closed since the session was taken
        self._sent += 1
        rid = f"dar-{self._sent}"
        params: dict[str, Any] = {"name": name, "arguments": arguments}
        if meta is not None:
            params["_meta"] = meta
        request = {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}
        waiter = self._pending[rid] = asyncio.get_running_loop().create_future()
        try:
            await send_line(_line(request))
            try:
                outcome = await waiter
            except anyio.get_cancelled_exc_class():
                await _cancel(send_line, rid)
                raise
        finally:
            self._pending.pop(rid, None)
        if isinstance(outcome, ErrorData):
            raise MCPError.from_error_data(outcome)
        plain = plain_record(outcome.result, self._fit_check(name)) if outcome.plain else None
        if plain is not None:
            return plain
        result = CallToolResult.model_validate(outcome.result, by_name=False)
        if not result.is_error:
            await session.validate_tool_result(name, result)
        return result

    def _fit_check(self, name: str) -> Callable[[Any], bool] | None:
        """The check of tool ``name``'s structured content (`output_check`), compiled at its
        first call; None for a tool the listing does not have."""
        check = self._fits.get(name)
        if check is None:
            tool = next((t for t in self.tools if t.name == name), None)
            if tool is None:
                return None
            check = self._fits[name] = output_check(tool.output_schema)
        return check


def plain_record(result: Any, fits: Callable[[Any], bool] | None) -> dict[str, Any] | None:
    """A result of text content (and structured content that ``fits``; no error) as
    `recorded` writes it, read without the SDK's models: the result nearly every call
    gets. None for any other (the models read it, and the SDK's session checks it)."""
    if type(result) is not dict or not RAW_MEMBERS.issuperset(result) or fits is None:
        return None
    content, structured = result.get("content"), result.get("structuredContent")
    if result.get("isError", False) is not False or type(content) is not list:
        return None
    if structured is not None and type(structured) is not dict:
        return None
    if not all(map(plain_text, content)) or not fits(structured):
        return None
    record: dict[str, Any] = {"content": [{"type": "text", "text": c["text"]} for c in content]}
    if structured is not None:
        record["structuredContent"] = structured
    return record


def plain_line(line: bytes) -> bool:
    """Whether a result's line has no NaN or Infinity (or text that looks like one): read
    as floats, they are recorded as null by the SDK's models, so the models read them."""
    return b"NaN" not in line and b"Infinity" not in line


#: The members of a result `plain_record` reads.
RAW_MEMBERS = frozenset({"content", "structuredContent", "isError"})


def plain_text(block: Any) -> bool:
    """Whether a content block is text and nothing else (no annotations, no ``_meta``)."""
    return (
        type(block) is dict
        and len(block) == 2
        and block.get("type") == "text"
        and type(block.get("text")) is str
    )


def output_check(schema: dict[str, Any] | None) -> Callable[[Any], bool]:
    """Whether a tool's structured content (None: it has none) passes the check the SDK's
    session makes (`ClientSession.validate_tool_result`, the same validator): False also
    where that check would fail another way, so that the session says how."""
    if schema is None:
        return lambda structured: True
    from jsonschema import SchemaError  # type: ignore[import-untyped]
    from jsonschema.validators import validator_for  # type: ignore[import-untyped]
    from referencing import Registry
    from referencing.exceptions import Unresolvable

    cls = validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError:
        return lambda structured: False
    validator = cls(schema, registry=Registry())

    def fits(structured: Any) -> bool:
        if structured is None:
            return False
        try:
            return bool(validator.is_valid(structured))
        except Unresolvable:
            return False

    return fits


async def _cancel(send_line: SendLine, rid: str) -> None:
    """Tell the upstream a call was given up (shielded, bounded: the caller is cancelled)."""
    said = {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": rid, "reason": "caller cancelled"},
    }
    with anyio.CancelScope(shield=True), anyio.move_on_after(1.0), suppress(OSError):
        await send_line(_line(said))


def _line(message: dict[str, Any]) -> bytes:
    """A JSON-RPC message as one line of JSON (its values came from JSON: they all dump)."""
    return to_json(message)


def _error_data(error: Any) -> ErrorData:
    """A JSON-RPC error object as the SDK reads it; a malformed one is an internal error."""
    try:
        return ErrorData.model_validate(error)
    except ValueError:
        said = f"the upstream answered an invalid error: {error!r}"
        return ErrorData(code=INTERNAL_ERROR, message=said)


def _page(cursor: str | None) -> Any:
    if cursor is None:
        return None
    from mcp_types import PaginatedRequestParams

    return PaginatedRequestParams(cursor=cursor)
