"""The typed tools the runtime tests call as a model would: pydantic models, an enum, a
dataclass, a date, a literal, lax coercion, a session-scoped key, and a rule. ``runs``
counts each handler's executions (reset before every test of `tests/runtime`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from dar import Allow, Deny, Effect, rule, tool


class Courier(str, enum.Enum):
    SHALOM = "shalom"
    OLVA = "olva"


class Item(BaseModel):
    sku: str
    qty: Annotated[int, Field(gt=0)]


class Shipment(BaseModel):
    order_id: str
    courier: Courier
    eta: dt.date


@dataclasses.dataclass
class Receipt:
    id: str
    at: dt.datetime


runs: Counter[str] = Counter()


@tool(effect=Effect.MUTATE_EXTERNAL)
def dispatch_order(order_id: str, courier: Courier, zone: str, items: list[Item]) -> Shipment:
    """Dispatch an order with a courier.

    Args:
        order_id: the shop's order number, like ORD-1
        courier: who carries it
        zone: the delivery town
        items: what is in the parcel
    """
    runs["dispatch_order"] += 1
    return Shipment(order_id=order_id, courier=courier, eta=dt.date(2026, 12, 1))


@tool(effect=Effect.MUTATE_LOCAL)
def add(a: int, b: int) -> int:
    runs["add"] += 1
    return a + b


@tool(effect=Effect.MUTATE_LOCAL, coerce=True)
def reserve(sku: str, qty: int) -> dict[str, Any]:
    runs["reserve"] += 1
    return {"sku": sku, "qty": qty}


@tool(effect=Effect.READ)
def get_order(order_id: str, when: dt.date | None = None) -> Receipt:
    runs["get_order"] += 1
    return Receipt(id=order_id, at=dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc))


@tool(effect=Effect.MUTATE_EXTERNAL, scope="session")
def send_whatsapp(to: str, text: str, brand: Literal["Alpaca Textiles"]) -> dict[str, str]:
    runs["send_whatsapp"] += 1
    return {"sent": text}


@rule(applies_to="dispatch_order")
def covers_zone(inp: dict[str, Any], ctx: Any) -> Allow | Deny:
    if inp["zone"] != "puno":
        return Deny(f"{inp['courier']} does not deliver to {inp['zone']}")
    return Allow()


TOOLS = [dispatch_order, add, reserve, get_order, send_whatsapp]
ORDER = {
    "order_id": "ORD-1",
    "courier": "shalom",
    "zone": "puno",
    "items": [{"sku": "A", "qty": 2}],
}
