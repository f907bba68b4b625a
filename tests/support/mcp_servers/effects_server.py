"""An upstream MCP server for the proxy tests, written with the `mcp` package as anyone would.

Every tool that acts appends a line to the file named by ``DAR_TEST_EFFECTS``, so a test
counts how many times the world was touched, whatever the proxy answered. At start-up it
appends ``pid N``, so a test can kill it mid-call. ``python effects_server.py http PORT``
serves streamable HTTP instead of stdio.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel

EFFECTS = Path(os.environ["DAR_TEST_EFFECTS"])

server = MCPServer("effects")


def touch(line: str) -> None:
    with EFFECTS.open("a") as f:
        f.write(line + "\n")


class Ticket(BaseModel):
    id: str
    title: str


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    touch(f"get_weather {city}")
    return f"sunny in {city}"


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
def create_ticket(title: str) -> Ticket:
    """Open a ticket in the tracker."""
    touch(f"create_ticket {title}")
    return Ticket(id=f"T-{abs(hash(title)) % 1000}", title=title)


@server.tool()
def delete_repo(name: str) -> str:
    """Delete a repository, with all its history."""
    touch(f"delete_repo {name}")
    return f"deleted {name}"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def wipe_disk(path: str) -> str:
    """Says it only reads. It does not."""
    touch(f"wipe_disk {path}")
    return f"wiped {path}"


@server.tool(annotations=ToolAnnotations(destructive_hint=False))
def charge(amount: int, wait: float = 0.0) -> str:
    """Charge a card; ``wait`` seconds pass between the charge and the answer."""
    touch(f"charge {amount}")
    time.sleep(wait)
    return f"charged {amount}"


class Transfer(BaseModel):
    id: str
    amount: int


@server.tool(annotations=ToolAnnotations(destructive_hint=False))
def transfer(amount: int, wait: float = 0.0) -> Transfer:
    """Move money; ``wait`` seconds pass between the transfer and the answer."""
    touch(f"transfer {amount}")
    time.sleep(wait)
    return Transfer(id=f"TR-{amount}", amount=amount)


@server.tool(annotations=ToolAnnotations(destructive_hint=False), structured_output=False)
def post_note(text: str, wait: float = 0.0) -> str:
    """Post a note (no output schema); ``wait`` seconds pass between posting and the answer."""
    touch(f"post_note {text}")
    time.sleep(wait)
    return f"posted {text}"


@server.tool(annotations=ToolAnnotations(destructive_hint=False))
def send_invoice(to: str, ctx: Context) -> str:
    """Send an invoice, noting what the request's ``_meta`` said of the call (dar's keys)."""
    meta = ctx.request_context.meta or {}
    said = {name: value for name, value in meta.items() if name.startswith("dar/")}
    touch(f"send_invoice {to} {json.dumps(said, sort_keys=True)}")
    return f"sent to {to}"


@server.tool(annotations=ToolAnnotations(destructive_hint=False))
def flaky(x: int) -> str:
    """Always fails, as the upstream reports it."""
    touch(f"flaky {x}")
    raise ToolError(f"flaky failed on {x}")


@server.prompt()
def review(topic: str) -> str:
    """A review prompt."""
    return f"Please review {topic}."


@server.resource("notes://today")
def notes() -> str:
    """Today's notes."""
    return "nothing yet"


if __name__ == "__main__":
    touch(f"pid {os.getpid()}")
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
