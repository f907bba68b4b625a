"""Guards' shares in the database (`dar.core.guards`), written once for both dialects.

`reserve` runs in one transaction of its own, before the claim: it locks each scope (a
Postgres advisory lock keyed by the scope; SQLite's ``BEGIN IMMEDIATE`` already serializes
the whole transaction), reads the scope's rows with the state of the claim each call
took, lets the core decide, and writes this call's rows. The claim's statements are not
touched: a share tells its own state, and the claim's is only read.
"""

from __future__ import annotations

from dataclasses import astuple
from typing import Any

from dar.core.guards import vector_from, vector_text
from dar.core.ops import CheckGuards, GuardDecision, GuardRow, ReserveGuards, SettleGuards
from dar.store.steps import Lock, Sql, Steps

COLUMNS = tuple(GuardRow.__dataclass_fields__)[:-1]  # claim_state is read, not stored


def _claims(table: str) -> str:
    """The claims table beside ``table`` (same schema)."""
    return table.replace("agent_tool_guards", "agent_tool_claims")


def _row(found: Any) -> GuardRow:
    values = list(found)
    values[6] = vector_from(values[6])
    return GuardRow(*values)


def reserve(table: str, op: ReserveGuards | CheckGuards) -> Steps:
    """Lock, read, decide and (for `ReserveGuards`) write: see `dar.core.ops.ReserveGuards`."""
    for key in sorted({scan.lock_key for scan in op.scans}):  # one order: no deadlock
        yield Lock(key)
    cols = ", ".join(f"r.{c}" for c in COLUMNS)
    found: list[list[GuardRow]] = []
    for scan in op.scans:
        rows = yield Sql(
            f"SELECT {cols}, c.state FROM {table} r LEFT JOIN {_claims(table)} c"
            " ON c.idempotency_key = r.idempotency_key"
            " AND CAST(c.call_event_id AS TEXT) = r.event_id"
            " WHERE r.tool_name = :tool AND r.guard = :guard AND r.scope = :scope"
            " AND r.created_at > :since AND r.state <> 'released' ORDER BY r.created_at",
            {"tool": scan.tool_name, "guard": scan.guard, "scope": scan.scope, "since": scan.since},
            "all",
        )
        found.append([_row(r) for r in rows])
    decision = op.decide(found)
    if isinstance(op, ReserveGuards):
        yield from _write(table, decision)
    return decision


def _write(table: str, decision: GuardDecision) -> Steps:
    if decision.supersede is not None and decision.rows:
        # The share this call kept while a person decided: its new ones replace it.
        yield Sql(
            f"UPDATE {table} SET state = 'released' WHERE idempotency_key = :key"
            " AND state = 'held' AND held_until IS NULL",
            {"key": decision.supersede},
            "none",
        )
    values = ", ".join(f":{c}" for c in COLUMNS)
    for row in decision.rows:
        params = dict(zip(COLUMNS, astuple(row), strict=False))
        params["vector"] = vector_text(row.vector)
        yield Sql(f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({values})", params, "none")


def settle(table: str, op: SettleGuards) -> Steps:
    """See `dar.core.ops.SettleGuards`."""
    whose = "idempotency_key = :key" if op.key is not None else "event_id = :event_id"
    yield Sql(
        f"UPDATE {table} SET state = :state, held_until = :until WHERE {whose} AND state = 'held'",
        {"state": op.state, "until": op.held_until, "event_id": op.event_id, "key": op.key},
        "none",
    )
