"""A small world for searches, where the greedy first choice is wrong: the cheapest
courier does not cover the zone (a rule refuses it), the second-cheapest charges a fee
only its preview shows, and the third is the best deal. Its handlers count their runs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from dar import Effect, Runtime, rule, tool
from dar.rules import Deny
from dar.speculate import Branch, Candidate


@dataclass
class World:
    """The couriers' prices, fees and zones, and what ran (reads and effects)."""

    prices: dict[str, int] = field(
        default_factory=lambda: {"cheapo": 900, "shalom": 1200, "andes": 1500}
    )
    fees: dict[str, int] = field(default_factory=lambda: {"shalom": 800})
    uncovered: set[str] = field(default_factory=lambda: {"cheapo"})
    ran: Counter[str] = field(default_factory=Counter)

    def tools(self) -> list[Any]:
        world = self

        @tool(effect=Effect.READ)
        def quote_couriers(zone: str) -> list[dict[str, Any]]:
            world.ran["quote_couriers"] += 1
            return [{"courier": c, "cents": p} for c, p in sorted(world.prices.items())]

        def preview(order_id: str, courier: str, zone: str) -> dict[str, Any]:
            fee = world.fees.get(courier, 0)
            return {"courier": courier, "cents": world.prices[courier] + fee, "fee_cents": fee}

        @tool(effect=Effect.MUTATE_EXTERNAL, simulate=preview)
        def book_courier(order_id: str, courier: str, zone: str) -> dict[str, Any]:
            world.ran["book_courier"] += 1
            return {"booked": order_id, "courier": courier}

        @tool(effect=Effect.MUTATE_EXTERNAL)
        def notify_customer(order_id: str, courier: str) -> dict[str, Any]:
            world.ran["notify_customer"] += 1
            return {"sent": order_id}

        return [quote_couriers, book_courier, notify_customer]

    def rules(self) -> list[Any]:
        # The rule reads its own copy: a rule's fingerprint covers what it reads, and the
        # prices moving is the world moving, not the rules changing.
        uncovered = sorted(self.uncovered)

        @rule(applies_to="book_courier")
        def covers_zone(inp: dict[str, Any], ctx: Any) -> Any:
            if inp["courier"] in uncovered:
                return Deny(f"{inp['courier']} does not cover {inp['zone']}")
            return True

        return [covers_zone]

    def runtime(self, url: str = "sqlite://:memory:", **kwargs: Any) -> Runtime:
        return Runtime(url, tools=self.tools(), rules=self.rules(), **kwargs)

    @property
    def effects(self) -> int:
        """Handler runs of every tool that is not a read."""
        return self.ran["book_courier"] + self.ran["notify_customer"]


ORDER = "ORD-7"
ZONE = "puno"


def propose(branch: Branch) -> list[Candidate]:
    """What a model would try: quote first, then book the couriers cheapest first, then
    tell the customer; a refused booking ends the branch."""
    if not branch.path:
        return [Candidate("quote_couriers", {"zone": ZONE})]
    last = branch.path[-1]
    if last.candidate.tool == "quote_couriers" and last.result.ok:
        quotes = sorted(last.result.output, key=lambda q: q["cents"])
        return [
            Candidate("book_courier", {"order_id": ORDER, "courier": q["courier"], "zone": ZONE})
            for q in quotes
        ]
    if last.candidate.tool == "book_courier" and last.result.status == "planned":
        courier = last.candidate.arguments["courier"]  # type: ignore[index]
        return [Candidate("notify_customer", {"order_id": ORDER, "courier": courier})]
    return []


def score(branch: Branch) -> float:
    """Cheaper is better; nothing booked (or a refusal) is worth nothing; telling the
    customer adds a little."""
    booked = [s for s in branch.path if s.candidate.tool == "book_courier"]
    if not booked or booked[-1].result.status != "planned":
        return 0.0
    cents = float(booked[-1].result.output["cents"])
    told = any(s.candidate.tool == "notify_customer" for s in branch.path)
    return max(0.0, 1.0 - cents / 3000) * (1.0 if told else 0.8)


def greedy(world: World) -> float:
    """The score of the path a model's first choice at each step would take."""
    with world.runtime() as rt:
        found = rt.speculate("greedy", propose=propose, score=score, budget=1, depth=3)
    return score(Branch("greedy", found.path))
