"""SQL that both dialects share: the claim columns, the log query, what may be resolved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dar.core.ops import LogFilter, Resolve
from dar.core.states import ClaimState
from dar.records import Claim

CLAIM_COLUMNS = tuple(
    "idempotency_key" if name == "key" else name for name in Claim.__dataclass_fields__
)


def events_query(
    placeholder: str, filter: LogFilter, *, since: Any = None, schema_prefix: str = ""
) -> tuple[str, list[Any]]:
    """``SELECT * FROM agent_tool_events`` with the filters, in append order. ``since`` is
    ``filter.since`` as the dialect stores times (when the filter's own is None).

    Each filter is served by an index (``correlation_id``/``idempotency_key``/``tool_name``
    with ``seq``; ``event_id`` is unique).
    """
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("correlation_id", filter.correlation_id),
        ("tool_name", filter.tool),
        ("status", filter.status),
        ("idempotency_key", filter.key),
        ("event_id", filter.event_id),
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


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """Which sessions (correlation ids) to list; filters combine. ``text`` is a
    case-insensitive substring of the session id; ``tool``/``status``: sessions with at
    least one such row."""

    text: str | None = None
    tool: str | None = None
    status: str | None = None
    limit: int = 200


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One session as the log's aggregates describe it (no row is loaded)."""

    session_id: str
    events: int
    first_at: Any  # epoch seconds (SQLite) or datetime (Postgres)
    last_at: Any
    last_seq: int
    refused: int
    failed: int
    indeterminate: int


def _count_of(condition: str) -> str:
    return f"sum(CASE WHEN {condition} THEN 1 ELSE 0 END)"


_REFUSED = _count_of("status IN ('rejected', 'denied')")
_FAILED = _count_of("status = 'failed'")
_INDETERMINATE = _count_of("status = 'indeterminate'")


def sessions_query(
    placeholder: str, filter: SessionFilter, *, schema_prefix: str = "", after_seq: Any = None
) -> tuple[str, list[Any]]:
    """One GROUP BY over the log: a database of a million rows lists its sessions without
    sending them to Python. Newest activity first.

    ``after_seq``: aggregate only the sessions with a row after that ``seq`` (the newest
    ``filter.limit`` of them, found among those rows by the ``seq`` index), not the whole
    log. When that finds ``filter.limit`` sessions they are exactly the newest ones; the
    caller looks further back otherwise. Not with ``tool``/``status`` filters (a session's
    row anywhere decides those)."""
    where, having, params = ["correlation_id IS NOT NULL"], [], []
    if filter.text:
        escaped = filter.text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(f"lower(correlation_id) LIKE {placeholder} ESCAPE '\\'")
        params.append(f"%{escaped}%")
    if after_seq is not None:
        assert filter.tool is None and filter.status is None
        return _newest_sessions(placeholder, filter.limit, schema_prefix, where), [
            after_seq,
            *params,
        ]
    for column, value in (("tool_name", filter.tool), ("status", filter.status)):
        if value is not None:
            having.append(f"{_count_of(f'{column} = {placeholder}')} > 0")
            params.append(value)
    sql = (
        "SELECT correlation_id, count(*), min(created_at), max(created_at), max(seq), "
        f"{_REFUSED}, {_FAILED}, {_INDETERMINATE} "
        f"FROM {schema_prefix}agent_tool_events WHERE {' AND '.join(where)} "
        "GROUP BY correlation_id"
    )
    if having:
        sql += " HAVING " + " AND ".join(having)
    sql += f" ORDER BY max(seq) DESC LIMIT {int(filter.limit)}"
    return sql, params


def _newest_sessions(placeholder: str, limit: int, schema_prefix: str, where: list[str]) -> str:
    """The newest ``limit`` sessions with a row after a ``seq``, each then aggregated by
    its own index lookups (a LATERAL join: never a scan of the log)."""
    log = f"{schema_prefix}agent_tool_events"
    newest = (
        f"SELECT correlation_id FROM {log} WHERE seq > {placeholder} AND {' AND '.join(where)}"
        f" GROUP BY correlation_id ORDER BY max(seq) DESC LIMIT {int(limit)}"
    )
    return (
        f"SELECT s.correlation_id, a.* FROM ({newest}) AS s, LATERAL (SELECT count(*),"
        f" min(created_at), max(created_at), max(seq) AS last_seq, {_REFUSED}, {_FAILED},"
        f" {_INDETERMINATE} FROM {log} AS e WHERE e.correlation_id = s.correlation_id) AS a"
        " ORDER BY a.last_seq DESC"
    )


def session_rows(rows: Any) -> list[SessionRow]:
    return [
        SessionRow(str(r[0]), int(r[1]), r[2], r[3], int(r[4]), int(r[5]), int(r[6]), int(r[7]))
        for r in rows
    ]
