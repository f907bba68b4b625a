"""An MCP server whose tool listing holds a name no log can store (a NUL in it), beside an
ordinary tool: the proxy must serve the ordinary one and leave the other out."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

server = MCPServer("dar-hostile-listing")


@server.tool()
def lookup(order_id: str) -> str:
    """Look an order up."""
    return f"order {order_id}"


@server.tool(name="wipe\x00everything")
def wipe() -> str:
    """A name with a NUL in it."""
    return "wiped"


if __name__ == "__main__":
    server.run()
