"""SQL shared by the stores: the claim columns and the log query builder."""

from __future__ import annotations

from typing import Any

from dar.records import Claim

CLAIM_COLUMNS = tuple(
    "idempotency_key" if name == "key" else name for name in Claim.__dataclass_fields__
)


def events_query(
    placeholder: str,
    *,
    correlation_id: str | None = None,
    tool: str | None = None,
    status: str | None = None,
    key: str | None = None,
    since: Any = None,
    limit: int | None = None,
    schema_prefix: str = "",
) -> tuple[str, list[Any]]:
    """``SELECT * FROM agent_tool_events`` with the given filters, in append order.

    Each filter is served by an index (``correlation_id``/``idempotency_key``/``tool_name``
    with ``seq``).
    """
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("correlation_id", correlation_id),
        ("tool_name", tool),
        ("status", status),
        ("idempotency_key", key),
    ):
        if value is not None:
            clauses.append(f"{column} = {placeholder}")
            params.append(value)
    if since is not None:
        clauses.append(f"created_at >= {placeholder}")
        params.append(since)
    sql = f"SELECT * FROM {schema_prefix}agent_tool_events"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY seq"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql, params


def is_hit(claim: Claim, input_hash: str, now: float) -> bool:
    """Does this claim answer the call from the record? Done, unexpired, same input.
    (A fresh ``done`` claim never changes under a reader: only expired or released claims
    are taken again, so no transaction is needed around the check.)"""
    return (
        claim.state == "done"
        and (claim.expires_at is None or claim.expires_at > now)
        and claim.input_hash == input_hash
    )
