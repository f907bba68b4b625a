"""The upstream server's process on stdio, piped by the proxy itself (the fast path's side
of the upstream, as `dar.mcp_proxy.wire` is its side of the agent).

The MCP SDK's `stdio_client` turns every line the upstream writes into typed messages and
hands each across two in-memory streams and a task; every message written goes through a
stream and a task of its own. For a ``tools/call`` the proxy sends itself, none of that is
needed: the request is written as one line, and its answer is taken off the pipe by the
caller's ``intercept`` before anything is validated, as plain JSON. Every other line is
parsed and handed to the SDK's session the way `stdio_client` does, so the session
(``initialize``, listings, prompts, resources) works as over the SDK's transport.

The process is started and stopped as the SDK starts and stops it: in a session of its
own, stdin closed at the end, then SIGTERM to its process group, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
from mcp.shared.message import SessionMessage
from mcp_types import jsonrpc_message_adapter

from dar.mcp_proxy.wire import LINE_LIMIT

#: Reads one line from the upstream and says whether it was an answer it took.
Intercept = Callable[[bytes], bool]
#: Writes one line (a JSON-RPC message, no newline) to the upstream.
SendLine = Callable[[bytes], Awaitable[None]]
#: (the session's read stream, its write stream, the raw line writer)
Piped = tuple[Any, Any, SendLine]

#: How long the upstream has to exit after its stdin is closed, then after SIGTERM.
GRACE = 2.0


@asynccontextmanager
async def piped(
    command: list[str], env: dict[str, str], intercept: Intercept
) -> AsyncIterator[Piped]:
    """``command`` running, its pipes served until the block ends; then it is stopped."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=sys.stderr,
        env=env,
        start_new_session=True,
        limit=LINE_LIMIT,
    )
    stdin, stdout = process.stdin, process.stdout
    assert stdin is not None and stdout is not None

    async def send_line(data: bytes) -> None:
        stdin.write(data + b"\n")
        await stdin.drain()

    to_session, read = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write, from_session = anyio.create_memory_object_stream[SessionMessage](0)

    async def read_lines() -> None:
        async with to_session:
            with suppress(ConnectionError, ValueError):  # a broken pipe, a line over the limit
                while line := await stdout.readline():
                    if line.strip() and not intercept(line):
                        await to_session.send(parsed(line))

    async def write_messages() -> None:
        async with from_session:
            async for message in from_session:
                data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                try:
                    await send_line(data.encode())
                except OSError:
                    await to_session.aclose()  # the session sees the connection end
                    return

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_lines)
            tg.start_soon(write_messages)
            try:
                yield read, write, send_line
            finally:
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await stop(process)


def parsed(line: bytes) -> SessionMessage | Exception:
    """A line for the SDK's session, as its transport parses it (an error is handed on)."""
    try:
        return SessionMessage(jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        return exc


async def stop(process: asyncio.subprocess.Process) -> None:
    """Close the upstream's stdin, then SIGTERM its process group, then SIGKILL it, each
    after a grace period it did not exit in."""
    if process.stdin is not None:
        with suppress(OSError):
            process.stdin.close()
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
        with anyio.move_on_after(GRACE):
            while process.returncode is None:  # not wait(): a grandchild may hold the pipes
                await anyio.sleep(0.01)
            return
