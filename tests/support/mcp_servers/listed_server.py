"""An upstream MCP server that lists exactly the tools a test wrote, as raw MCP ``Tool``
objects: names, descriptions and input schemas no decorator would produce (a schema with
``additionalProperties: false``, an invalid schema, escape sequences in a name).

``python listed_server.py LISTING.json``: the file holds a list of MCP tool objects. Every
call appends ``NAME ARGUMENTS-AS-JSON`` to the file named by ``DAR_TEST_EFFECTS`` and
answers ``done``, whatever its arguments.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
)

EFFECTS = Path(os.environ["DAR_TEST_EFFECTS"])
LISTING = [Tool.model_validate(t) for t in json.loads(Path(sys.argv[1]).read_text())]


async def list_tools(ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
    return ListToolsResult(tools=LISTING)


async def call_tool(ctx: Any, params: CallToolRequestParams) -> CallToolResult:
    with EFFECTS.open("a") as f:
        f.write(f"{params.name} {json.dumps(params.arguments, sort_keys=True)}\n")
    return CallToolResult(content=[TextContent(type="text", text="done")])


async def main() -> None:
    server: Server[Any] = Server("dar-listed", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
