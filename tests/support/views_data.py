"""Sessions for the views' tests: every kind of row a person investigating looks at."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from dar import Deny, Effect, NeedsApproval, RuleContext, Runtime, Tool, rule, tool

#: A tool input that would run if any view put it into the page as HTML.
SCRIPT = "<script>window.pwned = 1</script><img src=x onerror='window.pwned = 2'>"


@tool(effect=Effect.READ)
def lookup(town: str) -> str:
    return "puno"


@tool(effect=Effect.MUTATE_EXTERNAL, key=lambda i: f"msg:{i['order']}")
def send(order: str, text: str) -> dict[str, str]:
    return {"sent": order}


@tool(effect=Effect.MUTATE_LOCAL)
def flaky(n: int) -> int:
    raise TimeoutError(f"courier API timed out for {n}")


@tool(effect=Effect.IRREVERSIBLE)
def pay(order: str, cents: int) -> dict[str, int]:
    return {"paid": cents}


@tool(effect=Effect.MUTATE_EXTERNAL)
def cancel_booking(order: str) -> str:
    return "cancelled"


@tool(effect=Effect.MUTATE_EXTERNAL, compensate=cancel_booking)
def book(order: str) -> dict[str, str]:
    return {"booking": order}


@tool(effect=Effect.MUTATE_EXTERNAL, compensate=cancel_booking)
def charge(order: str) -> dict[str, str]:
    raise RuntimeError("card declined")


@rule(applies_to="send")
def no_yunguyo(inp: dict[str, Any], ctx: RuleContext) -> Deny | bool:
    return Deny("no courier covers Yunguyo") if "Yunguyo" in inp["text"] else True


@rule(applies_to="pay")
def big_payments(inp: dict[str, Any], ctx: RuleContext) -> NeedsApproval | bool:
    return NeedsApproval("over 1000 PEN") if inp["cents"] > 1000 else True


TOOLS: list[Tool[Any]] = [lookup, send, flaky, pay, book, charge, cancel_booking]
RULES = [no_yunguyo, big_payments]


def runtime(db: Path) -> Runtime:
    return Runtime(f"sqlite:///{db}", tools=TOOLS, rules=RULES)


def full_session(rt: Runtime, session: str = "s-1") -> None:
    """executed, cached, rejected (by a rule), failed, an approval and a saga."""
    rt.call("lookup", {"town": SCRIPT}, correlation_id=session)
    rt.call("send", {"order": "A", "text": "on its way"}, correlation_id=session)
    rt.call("send", {"order": "A", "text": "on its way"}, correlation_id=session)
    rt.call("send", {"order": "B", "text": "to Yunguyo"}, correlation_id=session)
    rt.call("flaky", {"n": 1}, correlation_id=session)
    asked = rt.call("pay", {"order": "A", "cents": 5000}, correlation_id=session)
    assert asked.approval_id is not None
    rt.approve(asked.approval_id, by="alice")
    rt.call("pay", {"order": "A", "cents": 5000}, correlation_id=session)
    with rt.saga("checkout", correlation_id=session) as saga:
        saga.call("book", {"order": "A"})
        saga.call("charge", {"order": "A"})


def diff_sessions(rt: Runtime) -> None:
    """``a`` and ``b``: one call's input differs, one call's status (cached in ``b``)."""
    for session, text in (("a", "hello"), ("b", "good bye")):
        rt.call("lookup", {"town": "Juliaca"}, correlation_id=session)
        rt.call("send", {"order": f"x-{session}", "text": text}, correlation_id=session)
        rt.call("send", {"order": "C", "text": "same"}, correlation_id=session)


def tamper(db: Path, sql: str) -> None:
    """Edit history as a database owner would, going around the append-only triggers."""
    import sqlite3

    conn = sqlite3.connect(db, isolation_level=None)
    try:
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
        ).fetchall()
        for name, _ in triggers:
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute(sql)
        for _, create in triggers:
            conn.execute(create)
    finally:
        conn.close()


def build(db: Path) -> None:
    """s-1 (everything), a and b (for diff), and s-t whose third row was edited."""
    with runtime(db) as rt:
        full_session(rt)
        diff_sessions(rt)
        rt.call("lookup", {"town": "Puno"}, correlation_id="s-t")
        rt.call("send", {"order": "T", "text": "hi"}, correlation_id="s-t")
        rt.call("lookup", {"town": "Ilave"}, correlation_id="s-t")
    tamper(
        db,
        "UPDATE agent_tool_events SET output = '\"edited\"' WHERE seq = "
        "(SELECT seq FROM agent_tool_events WHERE correlation_id = 's-t' ORDER BY seq LIMIT 1)",
    )


#: Where the tests save their screenshots: the README's docs/ only when asked
#: (DAR_UPDATE_SCREENSHOTS=1), so a test run leaves the checkout as it found it.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs"
    if os.environ.get("DAR_UPDATE_SCREENSHOTS")
    else Path(tempfile.mkdtemp(prefix="dar-screenshots-"))
)
