"""docs/postgres.md's least-privilege grants, run as written against the test server: the role
they make can call, answer from the record, ask for and use an approval and run a saga, and
cannot change the log."""

from __future__ import annotations

import re
import uuid

import psycopg
import pytest

from dar import Budget, Effect, NeedsApproval, Runtime, Status, rule, tool
from dar.store.postgres import PostgresStore

from .pages import ROOT, blocks

PAGE = ROOT / "docs" / "postgres.md"


def grants() -> list[str]:
    """The page's GRANT statements, comments dropped."""
    found = [b for b in blocks(PAGE, "sql") if "GRANT" in b]
    assert len(found) == 1, "one sql block of GRANTs on the page"
    text = re.sub(r"--[^\n]*", "", found[0])
    return [s.strip() for s in text.split(";") if s.strip()]


@tool(effect=Effect.IRREVERSIBLE)
def confirm_payment(order_id: str) -> str:
    return "confirmed"


@rule(applies_to="confirm_payment")
def a_person_confirms(inp: dict[str, str], ctx: object) -> NeedsApproval:
    return NeedsApproval("a person confirms payments")


@tool(effect=Effect.MUTATE_EXTERNAL)
def cancel_booking(order_id: str) -> str:
    return "cancelled"


@tool(effect=Effect.MUTATE_EXTERNAL, compensate=cancel_booking)
def book_courier(order_id: str) -> str:
    return "booked"


@tool(effect=Effect.MUTATE_EXTERNAL, guards=[Budget(1, within="1h")])
def refund_once(order_id: str) -> str:
    return "refunded"


@pytest.fixture
def app_url(pg_base_url: str) -> str:
    """The page's role and schema, renamed for this test, migrated by the owner and granted
    exactly what the page says."""
    suffix = uuid.uuid4().hex[:10]
    schema, role = f"agents_{suffix}", f"dar_app_{suffix}"
    PostgresStore(pg_base_url, schema=schema).close()  # `dar migrate`, as the owner
    with psycopg.connect(pg_base_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        for statement in grants():
            renamed = re.sub(r"\bagents\.", f"{schema}.", statement)
            renamed = re.sub(r"\bSCHEMA agents\b", f"SCHEMA {schema}", renamed)
            conn.execute(renamed.replace("TO dar_app", f"TO {role}"))
    return pg_base_url.replace("postgres@", f"{role}@", 1) + f"?schema={schema}"


def test_the_documented_grants_are_enough(app_url: str) -> None:
    tools = [confirm_payment, book_courier]
    with Runtime(app_url, tools=tools, rules=[a_person_confirms]) as rt:
        asked = rt.call("confirm_payment", {"order_id": "ORD-1"}, correlation_id="conv-1")
        assert asked.status == Status.AWAITING_APPROVAL
        assert asked.approval_id is not None
        rt.approve(asked.approval_id, by="alice")
        done = rt.call("confirm_payment", {"order_id": "ORD-1"}, correlation_id="conv-1")
        assert done.status == Status.EXECUTED
        again = rt.call("confirm_payment", {"order_id": "ORD-1"}, correlation_id="conv-1")
        assert again.status == Status.CACHED
        with rt.saga("checkout-ORD-1", correlation_id="conv-1") as saga:
            saga.call("book_courier", {"order_id": "ORD-1"})
        assert saga.result == "completed"
        assert [a.status for a in rt.approvals(correlation_id="conv-1")] == ["used"]
        assert rt.execute(refund_once, {"order_id": "ORD-1"}).status == Status.EXECUTED
        assert rt.execute(refund_once, {"order_id": "ORD-2"}).status == Status.REJECTED


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE agent_tool_events SET output = 'null'",
        "DELETE FROM agent_tool_events",
        "TRUNCATE agent_tool_events",
    ],
)
def test_the_documented_role_cannot_change_the_log(app_url: str, statement: str) -> None:
    with Runtime(app_url, tools=[book_courier]) as rt:
        assert rt.call("book_courier", {"order_id": "ORD-2"}).status == Status.EXECUTED
    url, _, schema = app_url.partition("?schema=")
    with psycopg.connect(url, autocommit=True) as conn, pytest.raises(psycopg.Error):
        conn.execute(statement.replace("agent_tool_events", f"{schema}.agent_tool_events"))
