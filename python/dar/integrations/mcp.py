"""A `dar` runtime's own tools served as an MCP server (the other direction of `dar mcp-proxy`).

>>> from dar.integrations.mcp import serve
>>> serve(rt, name="orders")                                   # stdio
>>> serve(rt, name="orders", transport="streamable-http", port=8000)

Each tool is listed with its handler's JSON Schema and annotations derived from its effect
(``idempotentHint`` is true for every non-read tool because the runtime makes it so); each
``tools/call`` is ``rt.call``, answered with ``for_model()``. The correlation id is the
request's ``_meta["dar/correlation_id"]`` when present, else the MCP session (one per process
on stdio).
"""

from __future__ import annotations

import json
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from dar.integrations import require

require("mcp", "mcp")

import anyio  # noqa: E402
from mcp.server.lowlevel import Server  # noqa: E402
from mcp_types import (  # noqa: E402
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    ToolAnnotations,
)
from mcp_types import Tool as MCPTool  # noqa: E402

from dar.dialects import mcp_annotations  # noqa: E402
from dar.records import Result  # noqa: E402
from dar.runtime.aio import AsyncRuntime  # noqa: E402

if TYPE_CHECKING:
    from dar.runtime.sync import Runtime
    from dar.tools import Tool

META_KEY = "dar/correlation_id"

Transport = Literal["stdio", "streamable-http"]


def listed(tool: Tool[Any]) -> MCPTool:
    """One registered tool as MCP lists it."""
    schema = tool.input_schema()
    schema.pop("description", None)  # the tool's description goes beside it
    return MCPTool.model_validate(
        {
            "name": tool.name,
            "description": tool.summary,
            "inputSchema": schema,
            "annotations": ToolAnnotations.model_validate(mcp_annotations(tool.effect)),
        }
    )


def answer(result: Result) -> CallToolResult:
    """``for_model()`` as an MCP result; a JSON object output is also structured content."""
    said = result.for_model()
    body: dict[str, Any] = {
        "content": [TextContent(type="text", text=said.text)],
        "isError": said.is_error,
        "_meta": {"dar/status": str(result.status), "dar/key": result.key},
    }
    if result.ok and result.output_json is not None and result.output_json.startswith("{"):
        body["structuredContent"] = json.loads(result.output_json)
    return CallToolResult.model_validate(body)


def session_of(ctx: Any, fallback: str) -> str:
    """The request's ``_meta["dar/correlation_id"]``, else its MCP session."""
    meta = ctx.meta
    given = meta.get(META_KEY) if meta else None
    if isinstance(given, str) and given:
        return given
    headers = getattr(ctx.request, "headers", None)
    session = headers.get("mcp-session-id") if headers is not None else None
    return session if isinstance(session, str) and session else fallback


def server_for(rt: Runtime | AsyncRuntime, name: str) -> Server[Any]:
    """The MCP server of ``rt``'s registered tools."""
    process_session = uuid.uuid4().hex

    async def list_tools(ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
        return ListToolsResult(tools=[listed(t) for t in rt.tools])

    async def call_tool(ctx: Any, params: CallToolRequestParams) -> CallToolResult:
        cid = session_of(ctx, process_session)
        arguments = params.arguments or {}
        if isinstance(rt, AsyncRuntime):
            result = await rt.call(params.name, arguments, correlation_id=cid)
        else:  # a sync runtime's store calls block: not on the event loop
            call = partial(rt.call, params.name, arguments, correlation_id=cid)
            result = await anyio.to_thread.run_sync(call)
        return answer(result)

    return Server(name, on_list_tools=list_tools, on_call_tool=call_tool)


async def serve_async(
    rt: Runtime | AsyncRuntime,
    *,
    name: str = "dar",
    transport: Transport = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """`serve`, in a running event loop."""
    server = server_for(rt, name)
    if transport == "stdio":
        from mcp.server.stdio import stdio_server

        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
        return
    if transport != "streamable-http":
        raise ValueError(f"transport must be 'stdio' or 'streamable-http', not {transport!r}")
    import uvicorn

    app = server.streamable_http_app(host=host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    await uvicorn.Server(config).serve()


def serve(
    rt: Runtime | AsyncRuntime,
    *,
    name: str = "dar",
    transport: Transport = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """Serve ``rt``'s registered tools as an MCP server until the client goes (stdio) or the
    process is stopped (streamable HTTP at ``http://HOST:PORT/mcp``)."""
    anyio.run(partial(serve_async, rt, name=name, transport=transport, host=host, port=port))
