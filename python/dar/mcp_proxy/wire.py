"""The proxy's stdio transport to the agent, with ``tools/call`` answered at the JSON-RPC level.

The MCP SDK's stdio server reads each line in a worker thread and writes and flushes each
answer in two more, then routes every request through its dispatcher, middleware and typed
models. For the one request that matters to an agent's latency, ``tools/call``, the proxy
needs none of that: it reads ``id``, ``name``, ``arguments`` and ``_meta`` from the parsed
line, runs the call, and writes the answer the SDK would have written, the same bytes: the
usual answer built as plain JSON (`dar.mcp_proxy.server.plain_reply`), any other shaped by
the SDK's per-version serializer. Everything else (``initialize``,
``tools/list``, prompts, resources, notifications, malformed or unusual requests, and
every ``tools/call`` before the handshake is done or on a protocol version whose answers
are stamped per request) goes to the SDK's server unchanged, over in-memory streams.

The pipes are read and written without threads (asyncio pipe transports). A standard
input that is not a pipe, socket or terminal (a regular file) gets the SDK's transport.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data
from mcp.shared.message import SessionMessage
from mcp_types import (
    INTERNAL_ERROR,
    CallToolResult,
    ErrorData,
    JSONRPCError,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)
from mcp_types.methods import serialize_server_result
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

#: Answers one ``tools/call``: (tool name, arguments, the request's ``_meta``) to a result,
#: the SDK's model or the JSON object the SDK would write for it (no model built).
Answer = Callable[
    [str, dict[str, Any], Mapping[str, Any] | None],
    Awaitable[CallToolResult | dict[str, Any]],
]
#: Serves the SDK's server on a pair of streams (`Server.run` with its options).
ServeSDK = Callable[[Any, Any], Coroutine[Any, Any, None]]

#: The largest message read (a line of JSON-RPC): asyncio's default is 64 KiB.
LINE_LIMIT = 1 << 30
#: The members of ``tools/call`` params the fast path understands; any other goes the SDK's way.
FAST_PARAMS = frozenset({"name", "arguments", "_meta"})


def pipes_usable() -> bool:
    """Whether stdin and stdout can be driven without threads (pipes, sockets, terminals)."""
    for fd in (0, 1):
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            return False
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
            return False
    return True


@asynccontextmanager
async def claimed_stdio() -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """The agent's pipes as asyncio streams, on private descriptors. While serving, fd 0
    reads the null device and fd 1 writes to stderr (as in the SDK's transport), so a
    stray ``print`` in a policy or rule cannot corrupt the protocol stream."""
    wire_in, wire_out = os.dup(0), os.dup(1)
    kept_in, kept_out = os.dup(0), os.dup(1)  # to put back when done
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    read_transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(wire_in, "rb", buffering=0)
    )
    write_transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(wire_out, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(write_transport, protocol, None, loop)
    try:
        yield reader, writer
    finally:
        read_transport.close()
        write_transport.close()
        sys.stdout.flush()
        for kept, fd in ((kept_in, 0), (kept_out, 1)):
            os.dup2(kept, fd)
            os.close(kept)


def request_id_key(value: Any) -> Any:
    """A request id as the SDK correlates it: ``1`` and ``"1"`` name the same request."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def fast_params(message: Any) -> tuple[Any, str, dict[str, Any], Mapping[str, Any] | None] | None:
    """``(id, name, arguments, _meta)`` of a ``tools/call`` the fast path answers the way the
    SDK would, else None (the SDK then answers it, errors included)."""
    if not isinstance(message, dict) or message.get("method") != "tools/call":
        return None
    rid = message.get("id")
    if message.get("jsonrpc") != "2.0" or isinstance(rid, bool) or not isinstance(rid, (int, str)):
        return None
    params = message.get("params")
    if not isinstance(params, dict) or not FAST_PARAMS.issuperset(params):
        return None
    name, arguments, meta = params.get("name"), params.get("arguments"), params.get("_meta")
    if not isinstance(name, str) or not isinstance(arguments, (dict, type(None))):
        return None
    if meta is not None and (not isinstance(meta, dict) or "progressToken" in meta):
        return None  # progress is the SDK's to report
    return rid, name, arguments or {}, meta


class Wire:
    """One agent connection: the fast path for ``tools/call``, the SDK for the rest."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._initialize_id: Any = None
        self._version: str | None = None
        self._initialized = False
        self._in_flight: dict[Any, asyncio.Task[None]] = {}
        self._calls: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._stop: Callable[[], None] = lambda: None

    @property
    def fast(self) -> bool:
        """Whether ``tools/call`` may take the fast path: the handshake is done, on a
        protocol version whose answers carry no per-request stamp."""
        return (
            self._initialized
            and self._version is not None
            and self._version not in MODERN_PROTOCOL_VERSIONS
        )

    async def serve(self, answer: Answer, serve_sdk: ServeSDK) -> None:
        """Serve until the agent closes its end; the calls still in flight then run to their
        end (their outcomes recorded, their answers written)."""
        to_sdk, sdk_reads = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        sdk_writes, from_sdk = anyio.create_memory_object_stream[SessionMessage](0)
        async with anyio.create_task_group() as tg:
            self._stop = tg.cancel_scope.cancel
            tg.start_soon(self._write_sdk, from_sdk)
            tg.start_soon(serve_sdk, sdk_reads, sdk_writes)
            try:
                async with to_sdk:
                    await self._read(to_sdk, answer)
                await self._calls_done()
            finally:
                # Stopped (Ctrl-C, a failure): the calls in flight are cancelled, as a task
                # group's would be, and each records its cancellation before the proxy exits.
                for task in self._calls:
                    task.cancel()
                with anyio.CancelScope(shield=True):
                    await self._calls_done()
        if self._failure is not None:
            raise self._failure

    async def _read(self, to_sdk: Any, answer: Answer) -> None:
        while line := await self._reader.readline():
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                message = None
            found = fast_params(message) if self.fast else None
            if found is not None:
                self._start(answer, *found)
            elif not self._intercepted(message):
                await to_sdk.send(self._parsed(line, message))

    def _start(
        self, answer: Answer, rid: Any, name: str, arguments: dict[str, Any], meta: Any
    ) -> None:
        """Run one call in an asyncio task of its own (an anyio task group's costs several
        times as much per call); an agent's cancellation cancels the task."""
        task = asyncio.create_task(self._call(answer, rid, name, arguments, meta))
        self._in_flight[request_id_key(rid)] = task
        self._calls.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A call's task is done. One that failed outside the call (its answer could not be
        written) stops the proxy, as a task group's failing child would."""
        self._calls.discard(task)
        failure = None if task.cancelled() else task.exception()
        if failure is not None and self._failure is None:
            self._failure = failure
            self._stop()

    async def _calls_done(self) -> None:
        if self._calls:
            await asyncio.wait(set(self._calls))

    def _parsed(self, line: bytes, message: Any) -> SessionMessage | Exception:
        """The line as the SDK's transport hands it on (an exception when it is none)."""
        try:
            parsed = jsonrpc_message_adapter.validate_json(line, by_name=False)
        except Exception as exc:
            return exc
        if isinstance(message, dict):
            if message.get("method") == "initialize":
                self._initialize_id = message.get("id")
            elif message.get("method") == "notifications/initialized":
                self._initialized = True
        return SessionMessage(parsed)

    def _intercepted(self, message: Any) -> bool:
        """A cancellation of a call the fast path runs: stop it, answer nothing (as the SDK
        does for its own)."""
        if not isinstance(message, dict) or message.get("method") != "notifications/cancelled":
            return False
        params = message.get("params")
        rid = params.get("requestId") if isinstance(params, dict) else None
        task = self._in_flight.get(request_id_key(rid))
        if task is None:
            return False
        task.cancel()
        return True

    async def _call(
        self, answer: Answer, rid: Any, name: str, arguments: dict[str, Any], meta: Any
    ) -> None:
        key, version = request_id_key(rid), self._version
        assert version is not None  # the fast path begins after the handshake
        try:
            line = response_line(rid, await answer(name, arguments, meta), version)
        except asyncio.CancelledError:
            return  # the agent cancelled it, or the proxy is stopping: no answer
        except Exception as exc:
            line = _line(JSONRPCError(jsonrpc="2.0", id=rid, error=error_data(exc)))
        finally:
            if self._in_flight.get(key) is asyncio.current_task():
                del self._in_flight[key]
        await self._send(line)

    async def _write_sdk(self, from_sdk: Any) -> None:
        async with from_sdk:
            async for message in from_sdk:
                inner = message.message
                if (
                    isinstance(inner, JSONRPCResponse)
                    and self._initialize_id is not None
                    and inner.id == self._initialize_id
                ):
                    version = inner.result.get("protocolVersion")
                    self._version = version if isinstance(version, str) else None
                await self._send(_line(inner))

    async def _send(self, line: bytes) -> None:
        if self._writer.is_closing():
            return  # the agent is gone: nobody reads the answer (the log has it)
        self._writer.write(line)
        with suppress(ConnectionError):
            await self._writer.drain()


def response_line(rid: Any, result: CallToolResult | dict[str, Any], version: str) -> bytes:
    """The line the SDK writes to answer request ``rid`` with ``result`` on protocol
    ``version``: a model is shaped by that version's serializer; a JSON object is already."""
    if isinstance(result, CallToolResult):
        dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        try:
            result = serialize_server_result("tools/call", version, dumped)
        except ValidationError:
            invalid = ErrorData(code=INTERNAL_ERROR, message="Handler returned an invalid result")
            return _line(JSONRPCError(jsonrpc="2.0", id=rid, error=invalid))
    # What JSONRPCResponse.model_dump_json writes: pydantic's serializer, with its defaults.
    answer = {"jsonrpc": "2.0", "id": rid, "result": result}
    return to_json(answer, inf_nan_mode="null") + b"\n"


def _line(message: BaseModel) -> bytes:
    """A message as the SDK's stdio transport writes it."""
    return message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"


def error_data(exc: Exception) -> ErrorData:
    """A failed handler's JSON-RPC error, as the SDK's dispatcher words it."""
    if isinstance(exc, MCPError):
        return exc.error
    return handler_exception_to_error_data(exc) or ErrorData(code=0, message=str(exc))
