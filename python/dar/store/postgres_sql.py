"""The Postgres dialect, written once: every statement, and one small plan per operation.

A plan is a generator that yields `Query` records and maps the rows it gets back; the
engine (`dar.store.postgres`) runs it, retrying the whole plan after a transient fault.
Every statement is safe to repeat: event rows are inserted with `ON CONFLICT DO NOTHING`
(unique: `event_id` with the row's `created_at`), and a claim whose commit was lost in flight
is recognised as the caller's own (same owner, same started-event id), so an in-doubt commit
never runs a handler twice.

Round trips: every operation but `resolve`, `migrate` and `purge` is a single statement
(data-modifying CTEs write the claim and its event together). A cache hit is one round
trip; a fresh call two when no rule judges the tool (take-or-look-up, outcome) and three
when rules run between the look-up and the claim.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any, Literal

from dar._core import canonical_json
from dar.audit.chain import CHAIN_KEY_SQL, chain_key, content_hash, micros
from dar.core.ops import (
    Append,
    Finish,
    GetClaim,
    LogFilter,
    Mark,
    Resolve,
    Take,
    TakeOrLookup,
)
from dar.errors import ConfigurationError
from dar.records import EVENT_COLUMNS, Claim, Event, NewEvent
from dar.store import steps
from dar.store.migrate import migration_files
from dar.store.sql import (
    CLAIM_COLUMNS,
    SessionFilter,
    check_resolvable,
    events_query,
    session_rows,
    sessions_query,
)

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class Query:
    """One statement for a runner to execute, and what to send back."""

    sql: str
    params: dict[str, Any] | tuple[Any, ...] | None = ()
    rows: Literal["one", "all", "dicts", "none"] = "one"


Queries = Generator[Query, Any, Any]

#: Parameters whose type no statement's context tells Postgres: declared when prepared.
_DECLARED = {"lease_until": 701, "now": 701, "expires_at": 701, "expect": 23}  # float8, int4
_PYFORMAT = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True, slots=True)
class Hot:
    """A statement of the hot path in libpq's own form: ``$n`` placeholders, the
    parameters' names in that order, and a name to prepare it under (its text's digest,
    so two schemas sharing one pool never collide)."""

    name: bytes
    text: bytes
    params: tuple[str, ...]
    types: tuple[int, ...]

    @classmethod
    def of(cls, sql: str) -> Hot:
        names: dict[str, int] = {}

        def number(match: re.Match[str]) -> str:
            return f"${names.setdefault(match.group(1), len(names) + 1)}"

        text = _PYFORMAT.sub(number, sql).encode()
        digest = hashlib.sha256(text).hexdigest()[:24]
        return cls(
            f"dar_{digest}".encode(), text, tuple(names), tuple(_DECLARED.get(n, 0) for n in names)
        )


class Statements:
    """The SQL of one schema."""

    def __init__(self, schema: str, *, hash_chain: bool = True) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise ConfigurationError(f"schema must be a plain lowercase identifier, not {schema!r}")
        self.schema = schema
        self.channel = f"dar_claims_{schema}"
        s = f'"{schema}"'
        self.events = f"{s}.agent_tool_events"
        self.guards = f"{s}.agent_tool_guards"
        claims = f"{s}.agent_tool_claims"
        heads = f"{s}.agent_tool_chain_heads"
        cols = ", ".join(CLAIM_COLUMNS)
        self.select_claim = f"SELECT {cols} FROM {claims} WHERE idempotency_key = %(key)s"
        # The values of an event row, from parameters prefixed `e_`. Times arrive as whole
        # microseconds, so what is stored is exactly what the hash chain covered.
        casts = {
            "event_id": "::uuid",
            "parent_event_id": "::uuid",
            "call_id": "::uuid",
            "input": "::jsonb",
            "output": "::jsonb",
            "attempt": "::int",
            "duration_ms": "::float8",
        }
        values = []
        for col in EVENT_COLUMNS:
            if col in ("created_at", "completed_at"):
                values.append(f"to_timestamp(0) + %(e_{col})s::bigint * interval '1 microsecond'")
            else:
                values.append(f"%(e_{col})s{casts.get(col, '::text')}")
        ev_cols = ", ".join(EVENT_COLUMNS)

        def event_ctes(when: str) -> str:
            """Two CTEs that append the event (when ``when`` holds): ``head`` moves its
            correlation id's chain head — taking that one row's lock, so only writers of
            the same session wait — and ``ev`` inserts the row carrying the new head.
            A retried statement whose row already exists moves nothing."""
            # The row's own `created_at` too: the log is partitioned by it, so this looks
            # in one partition.
            fresh = (
                f"NOT EXISTS (SELECT 1 FROM {self.events} WHERE event_id = %(e_event_id)s::uuid"
                f" AND created_at = {values[EVENT_COLUMNS.index('created_at')]})"
            )
            if hash_chain:
                head = (
                    f"head AS (INSERT INTO {heads} AS h (correlation_id, head)"
                    " SELECT coalesce(%(e_correlation_id)s::text,"
                    " 'call:' || coalesce(%(e_call_id)s::text, %(e_event_id)s::text)),"
                    " encode(sha256(decode(%(e_content)s, 'hex')), 'hex')"
                    f" WHERE ({when}) AND {fresh}"
                    " ON CONFLICT (correlation_id) DO UPDATE SET head ="
                    " encode(sha256(decode(h.head, 'hex') || decode(%(e_content)s, 'hex')), 'hex')"
                    " RETURNING h.head)"
                )
            else:
                head = f"head AS (SELECT NULL::text AS head WHERE ({when}) AND {fresh})"
            return (
                f"{head}, ev AS (INSERT INTO {self.events} ({ev_cols}, row_hash)"
                f" SELECT {', '.join(values)}, head.head FROM head"
                " ON CONFLICT DO NOTHING RETURNING 1)"
            )

        self.append = f"WITH {event_ctes('TRUE')} SELECT count(*) FROM ev"
        mine = (
            f"SELECT 1 FROM {claims} WHERE idempotency_key = %(key)s AND owner = %(owner)s"
            " AND call_event_id = %(e_event_id)s::uuid AND state = 'running'"
        )
        won_expr = "(SELECT count(*) FROM won) + (SELECT count(*) FROM mine)"
        won_count = f"SELECT {won_expr}"
        self.claim_new = (
            f"WITH won AS (INSERT INTO {claims} (idempotency_key, tool_name, input_hash, state,"
            " owner, lease_until, version, attempts, created_at, call_event_id)"
            " VALUES (%(key)s, %(tool_name)s, %(input_hash)s, 'running', %(owner)s,"
            " %(lease_until)s, 1, 1, %(now)s, %(e_event_id)s::uuid)"
            " ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1),"
            f" mine AS ({mine}), {event_ctes('EXISTS (SELECT 1 FROM won)')} {won_count}"
        )
        # Look first, in the same statement: when the key is held (a hit, or a call in
        # progress) nothing is written, so the statement costs what a SELECT costs.
        self.claim_or_lookup = (
            f"WITH c AS ({self.select_claim}),"
            f" won AS (INSERT INTO {claims} (idempotency_key, tool_name, input_hash, state,"
            " owner, lease_until, version, attempts, created_at, call_event_id)"
            " SELECT %(key)s, %(tool_name)s, %(input_hash)s, 'running', %(owner)s,"
            " %(lease_until)s, 1, 1, %(now)s, %(e_event_id)s::uuid"
            " WHERE NOT EXISTS (SELECT 1 FROM c)"
            " ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1),"
            f" mine AS ({mine}), {event_ctes('EXISTS (SELECT 1 FROM won)')}"
            f" SELECT {won_expr}, c.* FROM (SELECT 1) AS one LEFT JOIN c ON TRUE"
        )
        self.claim_again = (
            f"WITH won AS (UPDATE {claims} SET tool_name = %(tool_name)s,"
            " input_hash = %(input_hash)s, state = 'running', owner = %(owner)s,"
            " lease_until = %(lease_until)s, version = version + 1, attempts = attempts + 1,"
            " output = NULL, error = NULL, completed_at = NULL, expires_at = NULL,"
            " call_event_id = %(e_event_id)s::uuid"
            " WHERE idempotency_key = %(key)s AND version = %(expect)s RETURNING 1),"
            f" mine AS ({mine}), {event_ctes('EXISTS (SELECT 1 FROM won)')} {won_count}"
        )
        notify = "n AS (SELECT pg_notify(%(channel)s, %(key)s) WHERE EXISTS (SELECT 1 FROM upd))"
        self.finish = (
            f"WITH upd AS (UPDATE {claims} SET state = %(state)s, output = %(output)s,"
            " error = %(error)s, completed_at = %(now)s, expires_at = %(expires_at)s,"
            " lease_until = NULL, version = version + 1"
            " WHERE idempotency_key = %(key)s AND owner = %(owner)s AND state = 'running'"
            f" RETURNING 1), {event_ctes('TRUE')}, {notify}"
            " SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM n)"
        )
        self.mark = (
            f"WITH upd AS (UPDATE {claims} SET state = %(state)s, version = version + 1"
            " WHERE idempotency_key = %(key)s AND version = %(expect)s RETURNING 1),"
            f" {event_ctes('EXISTS (SELECT 1 FROM upd)')}, {notify}"
            " SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM n)"
        )
        self.lock_claim = self.select_claim + " FOR UPDATE"
        self.resolve_done = (
            f"UPDATE {claims} SET state = 'done', output = %(output)s, completed_at = %(now)s,"
            " lease_until = NULL, version = version + 1 WHERE idempotency_key = %(key)s"
        )
        self.resolve_released = (
            f"UPDATE {claims} SET state = 'released', lease_until = NULL,"
            " version = version + 1 WHERE idempotency_key = %(key)s"
        )
        self.notify = "SELECT pg_notify(%(channel)s, %(key)s)"
        #: The statements of every call, run straight on libpq (`dar.store.postgres`).
        self.hot = {
            sql: Hot.of(sql)
            for sql in (
                self.select_claim,
                self.append,
                self.claim_new,
                self.claim_or_lookup,
                self.claim_again,
                self.finish,
                self.mark,
            )
        }
        self.approvals = f"{s}.agent_tool_approvals"
        self.sagas = f"{s}.agent_tool_sagas"
        self.runs = f"{s}.agent_tool_runs"


def event_params(event: NewEvent) -> dict[str, Any]:
    """The parameters (prefixed ``e_``) of one event row, and its content hash."""
    row = {col: getattr(event, col) for col in EVENT_COLUMNS}
    params = {name: row[col] for col, name in _EVENT_PARAMS}
    params["e_created_at"] = micros(event.created_at)
    params["e_completed_at"] = micros(event.completed_at)
    params["e_content"] = content_hash(row, json_as_text=True)
    return params


_EVENT_PARAMS = tuple((col, f"e_{col}") for col in EVENT_COLUMNS)


def _claim(row: tuple[Any, ...]) -> Claim:
    values = list(row[: len(CLAIM_COLUMNS)])
    if values[-1] is not None:
        values[-1] = str(values[-1])  # call_event_id: uuid -> str
    return Claim(*values)


# --- one plan per operation ----------------------------------------------------------------


def flushed(st: Statements) -> Queries:
    """No statement of its own: the engine writes the buffered rows it is given (`flush`)."""
    yield from ()


def chain_of(event: NewEvent) -> str:
    """The chain head a row moves: what a batch of rows is ordered by."""
    return chain_key(event.correlation_id, event.call_id or event.event_id)


def _take_params(op: Take) -> dict[str, Any]:
    return {
        "key": op.key,
        "tool_name": op.tool_name,
        "input_hash": op.input_hash,
        "owner": op.owner,
        "lease_until": op.lease_until,
        "now": op.now,
        "expect": op.expect_version,
        **event_params(op.started),
    }


def take(st: Statements, op: Take) -> Queries:
    statement = st.claim_new if op.expect_version is None else st.claim_again
    row = yield Query(statement, _take_params(op))
    return bool(row[0])


def take_or_lookup(st: Statements, op: TakeOrLookup) -> Queries:
    row = yield Query(st.claim_or_lookup, _take_params(op.take))
    won = bool(row[0])
    return won, None if won or row[1] is None else _claim(row[1:])


def finish(st: Statements, op: Finish) -> Queries:
    row = yield Query(
        st.finish,
        {
            "key": op.key,
            "owner": op.owner,
            "state": op.state.value,
            "output": op.output,
            "error": op.error,
            "now": op.now,
            "expires_at": op.expires_at,
            "channel": st.channel,
            **event_params(op.event),
        },
    )
    return bool(row[0])


def mark(st: Statements, op: Mark) -> Queries:
    row = yield Query(
        st.mark,
        {
            "key": op.key,
            "expect": op.expect_version,
            "state": op.state.value,
            "channel": st.channel,
            **event_params(op.event),
        },
    )
    return bool(row[0])


def resolve(st: Statements, op: Resolve) -> Queries:
    """Several statements: the engine wraps this one in a transaction."""
    row = yield Query(st.lock_claim, {"key": op.key})
    if row is None:
        raise KeyError(op.key)
    check_resolvable(_claim(row), op)
    if op.executed:
        yield Query(st.resolve_done, {"key": op.key, "output": op.output, "now": op.now}, "none")
    else:
        yield Query(st.resolve_released, {"key": op.key}, "none")
    yield Query(st.append, event_params(op.event), "none")
    yield Query(st.notify, {"channel": st.channel, "key": op.key}, "none")
    row = yield Query(st.select_claim, {"key": op.key})
    return _claim(row)


def append(st: Statements, op: Append) -> Queries:
    yield Query(st.append, event_params(op.event), "none")


def get_claim(st: Statements, op: GetClaim) -> Queries:
    row = yield Query(st.select_claim, {"key": op.key})
    return None if row is None else _claim(row)


def events(st: Statements, filter: LogFilter) -> Queries:
    sql, params = events_query("%s", filter, schema_prefix=f'"{st.schema}".')
    rows = yield Query(sql, tuple(params), "dicts")
    return [Event.from_row(r, json_as_text=False) for r in rows]


def migrate(st: Statements) -> Queries:
    """In one transaction, under an advisory lock: concurrent starters migrate once. A
    schema that is up to date is only read, so a role without DDL rights (docs/postgres.md's
    least-privilege grants) may start the runtime; it never tries to create anything."""
    table = f'"{st.schema}".dar_migrations'
    found = yield Query("SELECT to_regclass(%s)", (table,))
    if found[0] is not None:
        done = {r[0] for r in (yield Query(f"SELECT name FROM {table}", (), "all"))}
        if all(name in done for name, _ in migration_files("postgres")):
            return []
    yield Query("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"dar_migrate:{st.schema}",), "none")
    yield Query(f'CREATE SCHEMA IF NOT EXISTS "{st.schema}"', (), "none")
    yield Query(f'SET LOCAL search_path TO "{st.schema}", public', (), "none")
    yield Query(
        "CREATE TABLE IF NOT EXISTS dar_migrations"
        " (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        (),
        "none",
    )
    done = {r[0] for r in (yield Query("SELECT name FROM dar_migrations", (), "all"))}
    applied = []
    for name, script in migration_files("postgres"):
        if name in done:
            continue
        yield Query(script, None, "none")  # no parameters: several statements in one go
        yield Query("INSERT INTO dar_migrations (name) VALUES (%s)", (name,), "none")
        applied.append(name)
    return applied


def redaction_salt(st: Statements) -> Queries:
    row = yield Query(
        f'SELECT value FROM "{st.schema}".dar_meta WHERE name = %s', ("redaction_salt",)
    )
    return str(row[0])


def chain_heads(st: Statements, only: str | None) -> Queries:
    sql = f'SELECT correlation_id, head FROM "{st.schema}".agent_tool_chain_heads'
    if only is None:
        rows = yield Query(sql, (), "all")
    else:
        rows = yield Query(sql + " WHERE correlation_id = %s", (only,), "all")
    return {str(k): str(v) for k, v in rows}


def checkpoints(st: Statements) -> Queries:
    rows = yield Query(
        f'SELECT checkpoints FROM "{st.schema}".agent_tool_purges ORDER BY purge_id', (), "all"
    )
    merged: dict[str, str] = {}
    for (points,) in rows:
        merged.update({k: v["row_hash"] for k, v in points.items()})
    return merged


def gc(st: Statements, now: float) -> Queries:
    rows = yield Query(
        f'WITH d AS (DELETE FROM "{st.schema}".agent_tool_claims WHERE state = %s'
        " OR (state IN ('done', 'failed') AND expires_at IS NOT NULL AND expires_at <= %s)"
        " RETURNING 1) SELECT count(*) FROM d",
        ("released", now),
    )
    return int(rows[0])


_UPPER = re.compile(r"\bTO \('([^']+)'\)")


def _whole_partitions(bounds: list[tuple[str, str]], before: dt.datetime) -> list[str]:
    """The partitions every row of which is older than ``before`` (their upper bound, as
    Postgres prints it in UTC, is at or before it)."""
    whole = []
    for name, bound in bounds:
        upper = _UPPER.search(bound)
        if upper is not None and dt.datetime.fromisoformat(upper.group(1)) <= before:
            whole.append(name)
    return whole


def add_partitions(st: Statements, at: float, ahead: int) -> Queries:
    rows = yield Query(
        f'SELECT "{st.schema}".agent_tool_events_add_partitions(to_timestamp(%s), %s)',
        (at, ahead),
        "all",
    )
    return [str(name) for (name,) in rows]


def purge(st: Statements, before: dt.datetime, now: float, event: NewEvent) -> Queries:
    """In one transaction, as the table owner (the trigger checks both). The months wholly
    before ``before`` are detached and dropped (no row deleted: constant time, nothing to
    vacuum); older rows left in the month that ``before`` falls in, or in DEFAULT, are
    deleted. Writers wait while it runs (and readers too when it drops months): what is
    checkpointed is exactly what goes."""
    events = st.events
    yield Query("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"dar_purge:{st.schema}",))
    yield Query("SET LOCAL TimeZone = 'UTC'", (), "none")
    bounds = yield Query(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
        (events,),
        "all",
    )
    whole = [f'"{st.schema}"."{name}"' for name in _whole_partitions(bounds, before)]
    # The lock DETACH needs, taken at once: a writer holding a weaker one (its statement
    # reads the log before it inserts) would deadlock with an upgrade.
    mode = "ACCESS EXCLUSIVE" if whole else "EXCLUSIVE"
    yield Query(f"LOCK TABLE {events} IN {mode} MODE", (), "none")
    for table in whole:
        yield Query(f"ALTER TABLE {events} DETACH PARTITION {table}", (), "none")
    chain = CHAIN_KEY_SQL.format(call_id="call_id::text", event_id="event_id::text")
    gone = " UNION ALL ".join(
        f"SELECT {chain} AS k, seq, row_hash FROM {table}"
        + (" WHERE created_at < %(before)s" if table == events else "")
        for table in [events, *whole]
    )
    found = yield Query(
        f"SELECT DISTINCT ON (k) k, seq, row_hash, count(*) OVER (PARTITION BY k)"
        f" FROM ({gone}) AS gone ORDER BY k, seq DESC",
        {"before": before},
        "all",
    )
    checkpoints = {key: {"seq": seq, "row_hash": h} for key, seq, h, _ in found}
    rows = sum(n for *_, n in found)
    yield Query("SET LOCAL dar.purge = 'on'", (), "none")
    yield Query(f"DELETE FROM {events} WHERE created_at < %s", (before,), "none")
    yield Query("SET LOCAL dar.purge = 'off'", (), "none")
    for table in whole:
        yield Query(f"DROP TABLE {table}", (), "none")
    yield Query(
        f'INSERT INTO "{st.schema}".agent_tool_purges (purged_at, before, rows,'
        " checkpoints) VALUES (to_timestamp(%s), %s, %s, %s::jsonb)",
        (now, before, rows, json.dumps(checkpoints)),
        "none",
    )
    # The purge's own row names its checkpoints: verify ties each record to it.
    yield Query(
        st.append, event_params(replace(event, output=canonical_json(checkpoints).decode()))
    )
    return rows, checkpoints


def purge_records(st: Statements) -> Queries:
    rows = yield Query(
        f'SELECT checkpoints FROM "{st.schema}".agent_tool_purges ORDER BY purge_id', (), "all"
    )
    return [points for (points,) in rows]


#: How many of the newest rows the sessions list looks at first (then 8× more, and so on).
NEWEST_ROWS = 20_000


def sessions(st: Statements, filter: SessionFilter) -> Queries:
    """The newest sessions are found among the newest rows, so listing them does not read a
    log of years (`dar ui`'s first page); with a tool/status filter, over the whole log.
    In one transaction (the engine's), for the SET LOCAL."""
    prefix = f'"{st.schema}".'
    if filter.tool is not None or filter.status is not None:
        sql, params = sessions_query("%s", filter, schema_prefix=prefix)
        return session_rows((yield Query(sql, tuple(params), "all")))
    # Each session's lookups are estimated far above what they cost: compiling the plan
    # (JIT) would take ten times longer than running it.
    yield Query("SET LOCAL jit = off", (), "none")
    (top,) = yield Query(f"SELECT max(seq) FROM {st.events}")
    window = NEWEST_ROWS
    while True:
        after = (top or 0) - window
        sql, params = sessions_query("%s", filter, schema_prefix=prefix, after_seq=after)
        rows = yield Query(sql, tuple(params), "all")
        if len(rows) >= filter.limit or after <= 0:
            return session_rows(rows)
        window *= 8


def claims(st: Statements) -> Queries:
    rows = yield Query(
        f'SELECT {", ".join(CLAIM_COLUMNS)} FROM "{st.schema}".agent_tool_claims', (), "all"
    )
    return [_claim(row) for row in rows]


_NAMED = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


def shared_queries(st: Statements, fn: Any, table: str, op: Any) -> Queries:
    """Run a plan written for both dialects (`dar.store.steps`) as Postgres queries; the
    engine wraps it in one transaction. Waking a key is a NOTIFY on the claims channel."""
    inner = fn(getattr(st, table), op)
    try:
        step = next(inner)
        while True:
            answer: Any = None
            if isinstance(step, steps.Sql):
                sql = _NAMED.sub(r"%(\1)s", step.sql)
                answer = yield Query(sql, step.params, step.rows)
            elif isinstance(step, steps.AppendRow):
                yield Query(st.append, event_params(step.event), "none")
            elif isinstance(step, steps.Lock):
                lock = "SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))"
                yield Query(lock, {"key": step.key}, "none")
            else:
                yield Query(st.notify, {"channel": st.channel, "key": step.key}, "none")
            step = inner.send(answer)
    except StopIteration as stop:
        return stop.value
