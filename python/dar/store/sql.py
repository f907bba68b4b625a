"""SQL that both dialects share: the claim columns, the log query, what may be resolved."""

from __future__ import annotations

from typing import Any

from dar.ops import LogFilter, Resolve
from dar.records import Claim
from dar.states import ClaimState

CLAIM_COLUMNS = tuple(
    "idempotency_key" if name == "key" else name for name in Claim.__dataclass_fields__
)


def events_query(
    placeholder: str, filter: LogFilter, *, since: Any = None, schema_prefix: str = ""
) -> tuple[str, list[Any]]:
    """``SELECT * FROM agent_tool_events`` with the filters, in append order. ``since`` is
    ``filter.since`` as the dialect stores times (when the filter's own is None).

    Each filter is served by an index (``correlation_id``/``idempotency_key``/``tool_name``
    with ``seq``).
    """
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("correlation_id", filter.correlation_id),
        ("tool_name", filter.tool),
        ("status", filter.status),
        ("idempotency_key", filter.key),
    ):
        if value is not None:
            clauses.append(f"{column} = {placeholder}")
            params.append(value)
    since = filter.since if since is None else since
    if since is not None:
        clauses.append(f"created_at >= {placeholder}")
        params.append(since)
    sql = f"SELECT * FROM {schema_prefix}agent_tool_events"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY seq"
    if filter.limit is not None:
        sql += f" LIMIT {int(filter.limit)}"
    return sql, params


RESOLVABLE = (ClaimState.INDETERMINATE, ClaimState.RUNNING)


def check_resolvable(claim: Claim, op: Resolve) -> None:
    """An operator decides only a call whose outcome is unknown: ``ValueError`` otherwise.
    A claim still running under a live lease is its worker's — releasing it would let a
    second worker run the effect concurrently — unless the operator forces it."""
    if ClaimState(claim.state) not in RESOLVABLE:
        raise ValueError(
            f"claim {claim.key!r} is {claim.state}; only an indeterminate or "
            "running claim can be resolved"
        )
    live = claim.lease_until is not None and claim.lease_until > op.now
    if claim.state == ClaimState.RUNNING and live and not op.force:
        left = (claim.lease_until or op.now) - op.now
        raise ValueError(
            f"claim {claim.key!r} is running, held by {claim.owner} under a lease that "
            f"ends in {left:.0f}s: its handler may be running now. Wait for the lease to "
            "end, or use --force if you know that worker is gone"
        )
