"""The upstream server of `bench_mcp.py`: one tool that takes ``ms`` milliseconds."""

from __future__ import annotations

import time

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("bench")


@server.tool(annotations=ToolAnnotations(destructiveHint=False))
def work(i: int, ms: float = 0.0) -> str:
    """Do ``ms`` milliseconds of work for item ``i``."""
    if ms:
        time.sleep(ms / 1000.0)
    return f"done {i}"


if __name__ == "__main__":
    server.run("stdio")
