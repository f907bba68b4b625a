"""A `dar` runtime's own tools served over MCP with `dar.integrations.mcp.serve`.

``python served.py DB_URL [stdio|streamable-http PORT]``; effects are counted in the file
named by ``DAR_TEST_EFFECTS``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dar import AsyncRuntime, Effect, tool
from dar.integrations.mcp import serve

EFFECTS = Path(os.environ["DAR_TEST_EFFECTS"])


@tool(effect=Effect.MUTATE_EXTERNAL)
async def send_invoice(customer: str, cents: int) -> dict[str, object]:
    """Send an invoice to a customer."""
    with EFFECTS.open("a") as f:
        f.write(f"send_invoice {customer} {cents}\n")
    return {"invoice": f"INV-{customer}", "cents": cents}


@tool(effect=Effect.READ)
def balance(customer: str) -> int:
    """What the customer owes, in cents."""
    return 1250


if __name__ == "__main__":
    rt = AsyncRuntime(sys.argv[1], tools=[send_invoice, balance])
    transport = sys.argv[2] if len(sys.argv) > 2 else "stdio"
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 8000
    serve(rt, name="billing", transport=transport, port=port)  # type: ignore[arg-type]
