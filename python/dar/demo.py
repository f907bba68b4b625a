"""`dar demo`: the three incidents from the pitch, replayed without and with the runtime.

1. A cron retried 19 times over 29 orders: 551 courier imports without dar, 29 with it.
2. Home delivery promised to a town no courier covers: refused, with the reason.
3. An outbound message under the wrong brand: refused.
Then the audit trail of one session, straight from the event log.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dar.effects import Effect, Status
from dar.rules import Allow, Deny, RuleContext, rule
from dar.runtime import Runtime
from dar.tools import tool

ORDERS = [f"ORD-{1001 + i}" for i in range(29)]
RETRIES = 19
COVERAGE = {"shalom": {"puno", "juliaca", "cusco", "arequipa"}, "olva": {"lima", "arequipa"}}
BRAND = "Alpaca Textiles"


def run_demo(db_path: Path, console: Console) -> dict[str, Any]:
    """Run the demo against a fresh SQLite file; return the figures it printed."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    shop = Shop()
    rt = Runtime(f"sqlite:///{db_path}", rules=shop.rules)
    figures: dict[str, Any] = {}
    session = "whatsapp-session-51951234567"
    cron_retries(rt, shop, console, figures)
    unreachable_town(rt, shop, console, figures, session)
    wrong_brand(rt, shop, console, figures, session)
    figures["session_events"] = audit_trail(rt, console, session)
    total = len(rt.events())
    rt.close()
    console.print(
        f"\n{total} events in [bold]{db_path}[/bold]. Look again with:\n"
        f"  dar stats --db sqlite:///{db_path}\n"
        f"  dar trace {session} --db sqlite:///{db_path}\n"
        f"  dar verify --db sqlite:///{db_path}"
    )
    return figures


class Shop:
    """The shop's tools, the rules in force, and what reached the outside world."""

    def __init__(self) -> None:
        self.courier_imports: Counter[str] = Counter()
        self.outbox: list[dict[str, str]] = []
        imports, outbox = self.courier_imports, self.outbox

        @tool(effect=Effect.MUTATE_EXTERNAL, key=lambda i: f"courier-import:{i['order_id']}")
        def import_to_courier(order_id: str, courier: str) -> dict[str, str]:
            imports[order_id] += 1
            return {"order_id": order_id, "tracking": f"{courier.upper()}-{order_id[-4:]}"}

        @tool(effect=Effect.IRREVERSIBLE, key=lambda i: f"dispatch:{i['order_id']}:{i['courier']}")
        def dispatch_order(order_id: str, courier: str, zone: str) -> dict[str, str]:
            return {"order_id": order_id, "dispatched_to": zone}

        @tool(effect=Effect.MUTATE_EXTERNAL)
        def send_whatsapp(to: str, brand: str, text: str) -> dict[str, str]:
            outbox.append({"to": to, "brand": brand, "text": text})
            return {"queued": to}

        self.import_to_courier = import_to_courier
        self.dispatch_order = dispatch_order
        self.send_whatsapp = send_whatsapp
        self.rules = [courier_must_cover_zone, speak_as_our_brand]


@rule(applies_to="dispatch_order")
def courier_must_cover_zone(inp: dict[str, Any], ctx: RuleContext) -> Allow | Deny:
    zones = COVERAGE.get(inp["courier"], set())
    if inp["zone"].lower() not in zones:
        covered = ", ".join(sorted(zones)) or "nothing"
        return Deny(
            f"courier {inp['courier']} does not deliver to {inp['zone']} (covers: {covered})"
        )
    return Allow()


@rule(applies_to="send_whatsapp")
def speak_as_our_brand(inp: dict[str, Any], ctx: RuleContext) -> Allow | Deny:
    if inp["brand"] != BRAND:
        return Deny(f"messages go out as {BRAND!r}, not {inp['brand']!r}")
    return Allow()


def cron_retries(rt: Runtime, shop: Shop, console: Console, figures: dict[str, Any]) -> None:
    """1. The cron that retried."""
    console.rule("[bold]1. A cron retries 19 times over 29 orders")
    for _ in range(RETRIES):
        for order in ORDERS:
            shop.import_to_courier.handler(order_id=order, courier="shalom")
    without = sum(shop.courier_imports.values())
    shop.courier_imports.clear()
    statuses: Counter[str] = Counter()
    for attempt in range(RETRIES):
        for order in ORDERS:
            res = rt.execute(
                shop.import_to_courier,
                {"order_id": order, "courier": "shalom"},
                correlation_id=f"cron-run-{attempt + 1}",
            )
            statuses[res.status.value] += 1
    with_dar = sum(shop.courier_imports.values())
    table = Table("", "courier imports", "duplicates", "calls answered from the record")
    table.add_row("without dar", str(without), str(without - len(ORDERS)), "0")
    table.add_row(
        "with dar", str(with_dar), str(with_dar - len(ORDERS)), str(statuses[Status.CACHED.value])
    )
    console.print(table)
    figures["imports_without"], figures["imports_with"] = without, with_dar


def unreachable_town(
    rt: Runtime, shop: Shop, console: Console, figures: dict[str, Any], session: str
) -> None:
    """2. A promise no courier can keep."""
    console.rule("[bold]2. Home delivery to a town no courier covers")
    bad = {"order_id": "ORD-2001", "courier": "shalom", "zone": "Yunguyo"}
    good = {"order_id": "ORD-2002", "courier": "shalom", "zone": "Juliaca"}
    table = Table("order", "zone", "without dar", "with dar", "reason")
    for inp in (bad, good):
        res = rt.execute(shop.dispatch_order, inp, correlation_id=session)
        table.add_row(
            inp["order_id"], inp["zone"], "dispatched", res.status.value, escape(res.reason or "")
        )
        figures[f"dispatch_{inp['zone']}"] = res.status.value
    console.print(table)


def wrong_brand(
    rt: Runtime, shop: Shop, console: Console, figures: dict[str, Any], session: str
) -> None:
    """3. The wrong brand."""
    console.rule("[bold]3. A message under the wrong brand")
    table = Table("brand", "without dar", "with dar", "reason")
    for brand in ("Llama Market", BRAND):
        res = rt.execute(
            shop.send_whatsapp,
            {"to": "+51951234567", "brand": brand, "text": "Your order ORD-2002 is on its way"},
            correlation_id=session,
        )
        table.add_row(brand, "sent", res.status.value, escape(res.reason or ""))
        figures[f"message_{brand}"] = res.status.value
    console.print(table)


def audit_trail(rt: Runtime, console: Console, session: str) -> int:
    """The session, straight from the event log; returns how many rows it has."""
    console.rule(f"[bold]Audit trail of session {session}")
    events = rt.events(correlation_id=session)
    table = Table("seq", "time (UTC)", "tool", "status", "why / what")
    for ev in events:
        if ev.rule_name:
            detail = f"[{ev.rule_name}] {ev.rejection_reason}"
        elif ev.status == "started":
            detail = f"claimed {ev.idempotency_key}"
        else:
            detail = json.dumps(ev.output, ensure_ascii=False)
        table.add_row(
            str(ev.seq),
            ev.created_at.strftime("%H:%M:%S.%f")[:-3],
            ev.tool_name,
            ev.status,
            escape(detail),
        )
    console.print(table)
    return len(events)
