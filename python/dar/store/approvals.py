"""Approvals in the database, written once for both dialects.

Each operation is a small plan of `dar.store.steps`, run by either store inside one
transaction of its own.
"""

from __future__ import annotations

from dataclasses import astuple
from typing import Any

from dar.core.ops import (
    DecideApproval,
    GetApproval,
    GrantAnswer,
    ListApprovals,
    RequestApproval,
    UseGrant,
)
from dar.records import APPROVAL_COLUMNS, Approval
from dar.store.steps import AppendRow, Sql, Steps, Wake

COLUMNS = ", ".join(APPROVAL_COLUMNS)


def _approval(row: Any) -> Approval | None:
    return None if row is None else Approval(*row)


def request(table: str, op: RequestApproval) -> Steps:
    values = ", ".join(f":{c}" for c in APPROVAL_COLUMNS)
    inserted = yield Sql(
        f"INSERT INTO {table} ({COLUMNS}) VALUES ({values})"
        " ON CONFLICT DO NOTHING RETURNING approval_id",
        dict(zip(APPROVAL_COLUMNS, astuple(op.approval), strict=True)),
    )
    if inserted is not None:
        yield AppendRow(op.event)
        return str(inserted[0])
    row = yield Sql(
        f"SELECT approval_id FROM {table} WHERE binding = :binding AND status = 'pending'",
        {"binding": op.approval.binding},
    )
    if row is None:  # this very request exists (a plan's, asked again), in whatever state
        row = yield Sql(
            f"SELECT approval_id FROM {table} WHERE approval_id = :id",
            {"id": op.approval.approval_id},
        )
    if row is None:  # decided between the statements: open ours after all
        return (yield from request(table, op))
    return str(row[0])


def use_grant(table: str, op: UseGrant) -> Steps:
    taken = yield Sql(
        f"UPDATE {table} SET status = 'used', used_by = :used_by, used_at = :now"
        f" WHERE approval_id = (SELECT approval_id FROM {table} WHERE binding = :binding"
        " AND status = 'approved' AND expires_at > :now ORDER BY decided_at LIMIT 1)"
        f" AND status = 'approved' RETURNING {COLUMNS}",
        {"binding": op.binding, "now": op.now, "used_by": op.used_by},
    )
    if taken is not None:
        return GrantAnswer("granted", _approval(taken))
    mine = yield Sql(
        f"SELECT {COLUMNS} FROM {table} WHERE binding = :binding AND used_by = :used_by",
        {"binding": op.binding, "used_by": op.used_by},
    )
    if mine is not None:  # a retried statement whose first commit went through
        return GrantAnswer("granted", _approval(mine))
    latest = _approval(
        (
            yield Sql(
                f"SELECT {COLUMNS} FROM {table} WHERE binding = :binding"
                " ORDER BY requested_at DESC, coalesce(decided_at, 0) DESC LIMIT 1",
                {"binding": op.binding},
            )
        )
    )
    return GrantAnswer("none" if latest is None else latest.state(op.now), latest)


def get(table: str, op: GetApproval) -> Steps:
    row = yield Sql(
        f"SELECT {COLUMNS} FROM {table} WHERE approval_id = :id", {"id": op.approval_id}
    )
    return _approval(row)


def decide(table: str, op: DecideApproval) -> Steps:
    row = yield Sql(
        f"UPDATE {table} SET status = :status, decided_at = :now, decided_by = :by,"
        " note = :note, expires_at = :expires_at, signature = :signature,"
        " edited_input = :edited_input, edited_hash = :edited_hash"
        f" WHERE approval_id = :id AND status = 'pending' RETURNING {COLUMNS}",
        {
            "status": "approved" if op.approve else "denied",
            "now": op.now,
            "by": op.by,
            "note": op.note,
            "expires_at": op.expires_at,
            "signature": op.signature,
            "edited_input": op.edited_input,
            "edited_hash": op.edited_hash,
            "id": op.approval_id,
        },
    )
    decided = _approval(row)
    if decided is None:
        return None
    yield AppendRow(op.event)
    if decided.idempotency_key is not None:
        yield Wake(decided.idempotency_key)
    return decided


def listing(table: str, op: ListApprovals) -> Steps:
    where: list[str] = []
    params: dict[str, Any] = {"now": op.now}
    if op.correlation_id is not None:
        where.append("correlation_id = :cid")
        params["cid"] = op.correlation_id
    status = op.status
    if status == "expired":
        where.append("status = 'approved' AND expires_at <= :now")
    elif status == "approved":
        where.append("status = 'approved' AND expires_at > :now")
    elif status is not None:
        where.append("status = :status")
        params["status"] = status
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = yield Sql(
        f"SELECT {COLUMNS} FROM {table}{clause} ORDER BY requested_at DESC", params, "all"
    )
    return [Approval(*r) for r in rows]
