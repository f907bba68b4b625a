"""A tiny MCP server on stdio for the integration tests.

Every call of a mutating tool appends a line to the file named by ``DAR_MCP_CALLS``, so a
test can count how often the server really ran it.
"""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("dar-echo")


def _note(line: str) -> None:
    with open(os.environ["DAR_MCP_CALLS"], "a", encoding="utf-8") as f:
        f.write(line + "\n")


@server.tool()
def echo(text: str) -> str:
    """Say the text back."""
    return text


@server.tool()
def ship_parcel(order_id: str, courier: str) -> str:
    """Ship an order's parcel with a courier."""
    _note(f"ship_parcel {order_id} {courier}")
    return f"shipped {order_id} with {courier}"


@server.tool()
def wipe_inventory(warehouse: str) -> str:
    """Delete every item of a warehouse."""
    _note(f"wipe_inventory {warehouse}")
    return f"wiped {warehouse}"


if __name__ == "__main__":
    server.run("stdio")
