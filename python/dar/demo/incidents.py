"""`dar demo`: the three incidents from the pitch, replayed without and with the runtime.

1. A cron retried 19 times over 29 orders: 551 courier imports without dar, 29 with it.
2. Home delivery promised to a town no courier covers: refused, with the reason.
3. An outbound message under the wrong brand: refused.
4. The agent confirms a payment on its own: it waits for a person, who approves the exact
   amount; a retry with another amount is a new request; the confirmation runs once.
5. A courier is booked, the payment fails, and the process is killed in the middle of
   cancelling the booking: another worker finishes the rollback, cancelling exactly once.
Then the audit trail of one session, straight from the event log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dar.effects import Effect, Status
from dar.integrations import require
from dar.rules import Allow, Deny, NeedsApproval, RuleContext, rule
from dar.runtime.sync import Runtime
from dar.tools import Reconciled, Tool, tool

ORDERS = [f"ORD-{1001 + i}" for i in range(29)]
RETRIES = 19
COVERAGE = {"shalom": {"puno", "juliaca", "cusco", "arequipa"}, "olva": {"lima", "arequipa"}}
BRAND = "Alpaca Textiles"


def run_demo(db_path: Path, console: Console) -> dict[str, Any]:
    """Run the demo against a fresh SQLite file; return the figures it printed."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    shop = Shop()
    rt = Runtime(f"sqlite:///{db_path}", tools=shop.tools, rules=shop.rules)
    figures: dict[str, Any] = {}
    session = "whatsapp-session-51951234567"
    cron_retries(rt, shop, console, figures)
    unreachable_town(rt, shop, console, figures, session)
    wrong_brand(rt, shop, console, figures, session)
    payment_needs_a_person(rt, shop, console, figures, session)
    figures["session_events"] = audit_trail(rt, console, session)
    rt.close()
    killed_mid_rollback(db_path, console, figures)
    with Runtime(f"sqlite:///{db_path}") as reader:
        total = len(reader.events())
    console.print(
        f"\n{total} events in [bold]{db_path}[/bold]. Look again with:\n"
        f"  dar stats --db sqlite:///{db_path}\n"
        f"  dar trace {session} --db sqlite:///{db_path}\n"
        f"  dar trace checkout-ORD-3001 --db sqlite:///{db_path}\n"
        f"  dar verify --db sqlite:///{db_path}"
    )
    return figures


class Shop:
    """The shop's tools, the rules in force, and what reached the outside world."""

    def __init__(self) -> None:
        self.courier_imports: Counter[str] = Counter()
        self.outbox: list[dict[str, str]] = []
        self.payments: list[int] = []
        self.dispatches: Counter[str] = Counter()
        imports, outbox, payments = self.courier_imports, self.outbox, self.payments
        dispatches = self.dispatches

        @tool(effect=Effect.MUTATE_EXTERNAL, key=lambda i: f"courier-import:{i['order_id']}")
        def import_to_courier(order_id: str, courier: str) -> dict[str, str]:
            imports[order_id] += 1
            return {"order_id": order_id, "tracking": f"{courier.upper()}-{order_id[-4:]}"}

        @tool(effect=Effect.IRREVERSIBLE, key=lambda i: f"dispatch:{i['order_id']}:{i['courier']}")
        def dispatch_order(order_id: str, courier: str, zone: str) -> dict[str, str]:
            dispatches[order_id] += 1
            return {"order_id": order_id, "dispatched_to": zone}

        @tool(effect=Effect.MUTATE_EXTERNAL)
        def send_whatsapp(to: str, brand: str, text: str) -> dict[str, str]:
            outbox.append({"to": to, "brand": brand, "text": text})
            return {"queued": to}

        @tool(effect=Effect.IRREVERSIBLE)
        def confirm_payment(order_id: str, amount_cents: int) -> dict[str, Any]:
            payments.append(amount_cents)
            return {"order_id": order_id, "confirmed": amount_cents}

        self.import_to_courier = import_to_courier
        self.dispatch_order = dispatch_order
        self.send_whatsapp = send_whatsapp
        self.confirm_payment = confirm_payment
        self.tools: list[Tool[Any]] = [
            import_to_courier,
            dispatch_order,
            send_whatsapp,
            confirm_payment,
        ]
        self.rules = [courier_must_cover_zone, speak_as_our_brand, a_person_confirms_payments]


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


@rule(applies_to="confirm_payment")
def a_person_confirms_payments(inp: dict[str, Any], ctx: RuleContext) -> NeedsApproval:
    return NeedsApproval(f"the agent wants to confirm {inp['amount_cents'] / 100:.2f} PEN")


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


def payment_needs_a_person(
    rt: Runtime, shop: Shop, console: Console, figures: dict[str, Any], session: str
) -> None:
    """4. Nobody agreed to that payment."""
    console.rule("[bold]4. The agent confirms a payment on its own")
    table = Table("step", "amount", "with dar", "what happened")
    agreed = {"order_id": "ORD-2002", "amount_cents": 125000}
    typo = {"order_id": "ORD-2002", "amount_cents": 152000}
    said = {
        Status.AWAITING_APPROVAL: "waits for a person; nothing done",
        Status.EXECUTED: "confirmed, once",
        Status.CACHED: "answered from the record: no second confirmation",
    }

    def attempt(step: str, args: dict[str, Any]) -> Any:
        res = rt.call("confirm_payment", args, correlation_id=session)
        amount = f"{args['amount_cents'] / 100:.2f} PEN"
        table.add_row(step, amount, res.status.value, said.get(res.status, res.reason or ""))
        return res

    first = attempt("the agent confirms", agreed)
    rt.approve(first.approval_id, by="alice", note="matches invoice F001-2002")
    table.add_row("alice approves", "1250.00 PEN", "approved", "that exact call, once, 1 hour")
    attempt("the agent retries, another amount (a new request)", typo)
    attempt("the agent retries as approved", agreed)
    attempt("the agent retries again", agreed)
    console.print(table)
    console.print("without dar: the agent confirms at once, as often as it retries")
    figures["payments_with"] = list(shop.payments)


@tool(
    effect=Effect.MUTATE_EXTERNAL,
    lease=1,
    reconcile=lambda inp: Reconciled(executed=_world_has(f"cancel {inp['order_id']}")),
)
def cancel_booking(order_id: str, courier: str) -> str:
    """Cancel a courier booking (the demo's outside world is a text file)."""
    _world_add(f"cancel {order_id}")
    if os.environ.get("DAR_DEMO_DIE_IN_ROLLBACK"):
        time.sleep(60)  # the process is killed here, after the courier cancelled
    return "cancelled"


@tool(effect=Effect.MUTATE_EXTERNAL, compensate=cancel_booking, lease=1)
def book_courier(order_id: str, courier: str) -> dict[str, str]:
    _world_add(f"book {order_id}")
    return {"booking": f"{courier.upper()}-{order_id}"}


@tool(effect=Effect.MUTATE_EXTERNAL, compensate=cancel_booking, lease=1)
def charge_advance(order_id: str, courier: str) -> str:
    raise RuntimeError("card declined")


def _world_add(line: str) -> None:
    with open(os.environ["DAR_DEMO_WORLD"], "a") as world:
        world.write(line + "\n")


def _world_has(line: str) -> bool:
    return line in Path(os.environ["DAR_DEMO_WORLD"]).read_text().splitlines()


def checkout_worker(db_path: str) -> None:
    """The worker that is killed mid-rollback (run in its own process)."""
    rt = Runtime(f"sqlite:///{db_path}", tools=[book_courier, charge_advance])
    with rt.saga("checkout-ORD-3001", correlation_id="checkout-ORD-3001", lease=1) as saga:
        saga.call("book_courier", {"order_id": "ORD-3001", "courier": "shalom"})
        saga.call("charge_advance", {"order_id": "ORD-3001", "courier": "shalom"})


def killed_mid_rollback(db_path: Path, console: Console, figures: dict[str, Any]) -> None:
    """5. The rollback that was killed."""
    console.rule("[bold]5. Payment fails after booking; the rollback is killed midway")
    world = db_path.with_name(db_path.name + ".world.txt")
    world.write_text("")
    env = {**os.environ, "DAR_DEMO_WORLD": str(world), "DAR_DEMO_DIE_IN_ROLLBACK": "1"}
    code = f"from dar.demo.incidents import checkout_worker; checkout_worker({str(db_path)!r})"
    worker = subprocess.Popen([sys.executable, "-c", code], env=env)
    os.environ["DAR_DEMO_WORLD"] = str(world)
    deadline = time.monotonic() + 30
    while not _world_has("cancel ORD-3001") and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.kill()  # SIGKILL: no cleanup, no outcome recorded
    worker.wait()
    time.sleep(1.2)  # the dead worker's leases (1 s) run out
    with Runtime(f"sqlite:///{db_path}", tools=[book_courier, charge_advance]) as rt:
        recovered = rt.recover_sagas()
        state = rt.sagas()[0].state if rt.sagas() else "missing"
    lines = world.read_text().splitlines()
    table = Table("", "bookings", "cancellations", "saga")
    table.add_row("without dar", "1", "0 (died) or 2 (blind rerun)", "lost with the process")
    table.add_row(
        "with dar",
        str(lines.count("book ORD-3001")),
        str(lines.count("cancel ORD-3001")),
        f"{state} by another worker" if recovered else state,
    )
    console.print(table)
    figures["saga_state"] = state
    figures["saga_cancellations"] = lines.count("cancel ORD-3001")


AGENT_TURNS = [
    [
        ("dispatch_order", '{"order_id": "ORD-4001", "courier": "shalom", "zone": "Juliaca"}'),
        ("dispatch_order", '{"zone": "Juliaca", "courier": "shalom", "order_id": "ORD-4001"}'),
        ("send_whatsapp", '{"to": "+51951234567", "brand": "Llama Market", "text": "Shipped!"}'),
    ],
    "ORD-4001 is on its way.",
]


def run_agent_demo(console: Console) -> dict[str, Any]:
    """`dar demo --agent`: the incidents through the real OpenAI client, against a scripted
    model on 127.0.0.1: an agent loop without dar, then the same loop with it."""
    from dar.demo.scripted_model import ModelServer, ToolCall
    from dar.integrations import openai as dar_openai  # needs the `openai` extra

    openai = require("openai", "openai")
    turns = [t if isinstance(t, str) else [ToolCall(*c) for c in t] for t in AGENT_TURNS]
    figures: dict[str, Any] = {}
    for label in ("without dar", "with dar"):
        shop = Shop()
        with (
            ModelServer(turns) as server,
            Runtime("sqlite://:memory:", tools=shop.tools, rules=shop.rules) as rt,
        ):
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="demo", max_retries=0)
            messages: list[Any] = [{"role": "user", "content": "Ship ORD-4001 and tell me."}]
            while True:
                completion = client.chat.completions.create(
                    model="scripted", messages=messages, tools=rt.tool_schemas("openai-chat")
                )
                message = completion.choices[0].message
                messages.append(message)
                if not message.tool_calls:
                    break
                if label == "with dar":
                    messages += dar_openai.run_tool_calls(rt, completion, correlation_id="agent")
                else:
                    messages += [_run_bare(shop, call) for call in message.tool_calls]
        wrong = [m for m in shop.outbox if m["brand"] != BRAND]
        figures[label] = (shop.dispatches["ORD-4001"], len(wrong))
    table = Table(
        "an agent loop over the OpenAI SDK", "dispatches of ORD-4001", "wrong-brand messages"
    )
    for label, (dispatched, wrong_brand) in figures.items():
        table.add_row(label, str(dispatched), str(wrong_brand))
    console.print(table)
    return figures


def _run_bare(shop: Shop, call: Any) -> dict[str, Any]:
    """What the loop does without dar: look the tool up by name and run it."""
    tools = {t.name: t for t in shop.tools}
    output = tools[call.function.name].handler(**json.loads(call.function.arguments))
    return {"role": "tool", "tool_call_id": call.id, "content": json.dumps(output)}


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
