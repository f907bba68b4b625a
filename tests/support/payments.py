"""A payment tool a person approves, and may edit, with the rules that judge it; `app_at`
builds its runtime for `dar approve --app tests.support.payments:app_at`."""

from __future__ import annotations

from typing import Any

from dar import Deny, Effect, NeedsApproval, Runtime, rule, tool

paid: list[dict[str, Any]] = []  # the handler's inputs, in order
LIMITS = {"min": 1, "max": 1000}  # a container: a rule reading it keeps its fingerprint


@tool(effect=Effect.IRREVERSIBLE)
def pay(order_id: str, amount: int) -> dict[str, Any]:
    paid.append({"order_id": order_id, "amount": amount})
    return {"paid": order_id, "amount": amount}


@rule(applies_to="pay")
def big_payments_need_a_person(inp: dict[str, Any], ctx: Any) -> Any:
    return NeedsApproval(f"payment of {inp['amount']}") if inp["amount"] >= 100 else True


@rule(applies_to="pay")
def within_the_limits(inp: dict[str, Any], ctx: Any) -> Any:
    low, high = LIMITS["min"], LIMITS["max"]
    return True if low <= inp["amount"] <= high else Deny(f"not between {low} and {high}")


RULES = [big_payments_need_a_person, within_the_limits]


def reset() -> None:
    paid.clear()
    LIMITS.update(min=1, max=1000)


def app_at(url: str) -> Runtime:
    return Runtime(url, tools=[pay], rules=RULES)
