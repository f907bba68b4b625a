"""The shop every integration example shares: one tool with a real effect and one rule.

Run an example, not this file. The database comes from DAR_DATABASE_URL (default
sqlite:///agent.db); inspect it afterwards with `dar trace conv-1 --db ...`.
"""

from __future__ import annotations

import os
from typing import Any

from dar import Allow, Deny, Effect, Rule, Tool, rule, tool


@tool(effect=Effect.MUTATE_EXTERNAL)
def place_order(item: str, quantity: int) -> dict[str, Any]:
    """Order goods from the supplier.

    Args:
        item: What to order.
        quantity: How many units.
    """
    print(f"supplier: ordering {quantity} x {item}")  # your real API call goes here
    return {"order": f"{quantity} x {item}", "status": "placed"}


@rule(applies_to="place_order")
def at_most_ten(inp: dict[str, Any], ctx: Any) -> Allow | Deny:
    return Deny("orders above 10 units need a human") if inp["quantity"] > 10 else Allow()


TOOLS: list[Tool[Any]] = [place_order]
RULES: list[Rule] = [at_most_ten]
DATABASE = os.environ.get("DAR_DATABASE_URL", "sqlite:///agent.db")
REQUEST = "Order 2 tea, 50 gold and a coffee."
