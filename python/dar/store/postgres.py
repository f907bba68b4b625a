"""The Postgres store: production mode, many workers on many machines.

Postgres is the distributed engine: every claim is one atomic statement, so exactly-once
holds across every process that shares the database, with nothing else to deploy.

Each store operation is written once, as a generator that yields SQL and maps the rows it
gets back (`_lookup`, `_claim`, ...). `PostgresStore` (psycopg `ConnectionPool`) and
`AsyncPostgresStore` (`AsyncConnectionPool`) only run those generators, so the sync and
async stores cannot drift apart.

Round trips: every operation is a single statement on an autocommit connection (data-
modifying CTEs write the claim and its event together). A cache hit is one round trip; a
fresh call three (look up, claim, record the outcome), because the rules run between the
look-up and the claim.

Faults: every write is safe to repeat — event rows are inserted with
`ON CONFLICT (event_id) DO NOTHING`, and a claim whose commit was lost in flight is
recognised as the caller's own (same owner, same started-event id) — so transient errors
(connection reset, server restart, serialization failure) are retried with backoff, and an
in-doubt commit never runs a handler twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import re
import threading
import time
from collections.abc import Callable, Generator
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolClosed

from dar.chain import CHAIN_KEY_SQL, content_hash, micros
from dar.errors import ConfigurationError, StoreError
from dar.migrate import migration_files
from dar.records import EVENT_COLUMNS, Claim, Event, NewEvent
from dar.store.flusher import Flusher
from dar.store.sql import CLAIM_COLUMNS, events_query, is_hit

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
RETRY_FOR = 15.0  # seconds a transient fault is retried before it surfaces


@dataclass(frozen=True, slots=True)
class Query:
    """One statement for a runner to execute, and what to send back."""

    sql: str
    params: dict[str, Any] | tuple[Any, ...] | None = ()
    rows: Literal["one", "all", "dicts", "none"] = "one"


Plan = Generator[Query, Any, Any]


class Statements:
    """The SQL of one schema."""

    def __init__(self, schema: str, *, hash_chain: bool = True) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise ConfigurationError(f"schema must be a plain lowercase identifier, not {schema!r}")
        self.schema = schema
        self.channel = f"dar_claims_{schema}"
        s = f'"{schema}"'
        self.events = f"{s}.agent_tool_events"
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
            fresh = (
                f"NOT EXISTS (SELECT 1 FROM {self.events} WHERE event_id = %(e_event_id)s::uuid)"
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
                " ON CONFLICT (event_id) DO NOTHING RETURNING 1)"
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


def _event_params(event: NewEvent) -> dict[str, Any]:
    params = {f"e_{col}": getattr(event, col) for col in EVENT_COLUMNS}
    params["e_created_at"] = micros(event.created_at)
    params["e_completed_at"] = micros(event.completed_at)
    row = {col: getattr(event, col) for col in EVENT_COLUMNS}
    params["e_content"] = content_hash(row, json_as_text=True)
    return params


def _claim(row: tuple[Any, ...]) -> Claim:
    values = list(row[: len(CLAIM_COLUMNS)])
    if values[-1] is not None:
        values[-1] = str(values[-1])  # call_event_id: uuid -> str
    return Claim(*values)


# --- the operations, written once ----------------------------------------------------------


def _append_all(st: Statements, events: list[NewEvent]) -> Plan:
    """Buffered hit rows, sent pipelined (one round trip)."""
    for event in events:
        yield Query(st.append, _event_params(event), "none")


def _claim_op(
    st: Statements,
    key: str,
    tool_name: str,
    input_hash: str,
    owner: str,
    lease_until: float,
    now: float,
    expect_version: int | None,
    started: NewEvent,
) -> Plan:
    params = {
        "key": key,
        "tool_name": tool_name,
        "input_hash": input_hash,
        "owner": owner,
        "lease_until": lease_until,
        "now": now,
        "expect": expect_version,
        **_event_params(started),
    }
    statement = st.claim_new if expect_version is None else st.claim_again
    row = yield Query(statement, params)
    return bool(row[0])


def _claim_or_lookup(
    st: Statements,
    key: str,
    tool_name: str,
    input_hash: str,
    owner: str,
    lease_until: float,
    now: float,
    started: NewEvent,
) -> Plan:
    params = {
        "key": key,
        "tool_name": tool_name,
        "input_hash": input_hash,
        "owner": owner,
        "lease_until": lease_until,
        "now": now,
        **_event_params(started),
    }
    row = yield Query(st.claim_or_lookup, params)
    won = bool(row[0])
    return won, None if won or row[1] is None else _claim(row[1:])


def _finish(
    st: Statements,
    key: str,
    owner: str,
    state: str,
    output: str | None,
    error: str | None,
    now: float,
    expires_at: float | None,
    event: NewEvent,
) -> Plan:
    row = yield Query(
        st.finish,
        {
            "key": key,
            "owner": owner,
            "state": state,
            "output": output,
            "error": error,
            "now": now,
            "expires_at": expires_at,
            "channel": st.channel,
            **_event_params(event),
        },
    )
    return bool(row[0])


def _mark(st: Statements, key: str, expect_version: int, state: str, event: NewEvent) -> Plan:
    row = yield Query(
        st.mark,
        {
            "key": key,
            "expect": expect_version,
            "state": state,
            "channel": st.channel,
            **_event_params(event),
        },
    )
    return bool(row[0])


def _resolve(
    st: Statements, key: str, executed: bool, output: str | None, now: float, event: NewEvent
) -> Plan:
    """Several statements: the runner wraps this one in a transaction."""
    row = yield Query(st.lock_claim, {"key": key})
    if row is None:
        raise KeyError(key)
    claim = _claim(row)
    if claim.state not in ("indeterminate", "running"):
        raise ValueError(
            f"claim {key!r} is {claim.state}; only an indeterminate or "
            "running claim can be resolved"
        )
    if executed:
        yield Query(st.resolve_done, {"key": key, "output": output, "now": now}, "none")
    else:
        yield Query(st.resolve_released, {"key": key}, "none")
    yield Query(st.append, _event_params(event), "none")
    yield Query(st.notify, {"channel": st.channel, "key": key}, "none")
    row = yield Query(st.select_claim, {"key": key})
    return _claim(row)


def _append(st: Statements, event: NewEvent) -> Plan:
    yield Query(st.append, _event_params(event), "none")


def _get_claim(st: Statements, key: str) -> Plan:
    row = yield Query(st.select_claim, {"key": key})
    return None if row is None else _claim(row)


def _events(
    st: Statements,
    correlation_id: str | None,
    tool: str | None,
    status: str | None,
    key: str | None,
    since: dt.datetime | None,
    limit: int | None,
) -> Plan:
    sql, params = events_query(
        "%s",
        correlation_id=correlation_id,
        tool=tool,
        status=status,
        key=key,
        since=since,
        limit=limit,
        schema_prefix=f'"{st.schema}".',
    )
    rows = yield Query(sql, tuple(params), "dicts")
    return [Event.from_row(r, json_as_text=False) for r in rows]


def _migrate(st: Statements) -> Plan:
    """In one transaction, under an advisory lock: concurrent starters migrate once."""
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


def _redaction_salt(st: Statements) -> Plan:
    row = yield Query(
        f'SELECT value FROM "{st.schema}".dar_meta WHERE name = %s', ("redaction_salt",)
    )
    return str(row[0])


def _chain_heads(st: Statements) -> Plan:
    rows = yield Query(
        f'SELECT correlation_id, head FROM "{st.schema}".agent_tool_chain_heads', (), "all"
    )
    return {str(k): str(v) for k, v in rows}


def _checkpoints(st: Statements) -> Plan:
    rows = yield Query(
        f'SELECT checkpoints FROM "{st.schema}".agent_tool_purges ORDER BY purge_id', (), "all"
    )
    merged: dict[str, str] = {}
    for (points,) in rows:
        merged.update({k: v["row_hash"] for k, v in points.items()})
    return merged


def _gc(st: Statements, now: float) -> Plan:
    rows = yield Query(
        f'WITH d AS (DELETE FROM "{st.schema}".agent_tool_claims WHERE state = %s'
        " OR (state IN ('done', 'failed') AND expires_at IS NOT NULL AND expires_at <= %s)"
        " RETURNING 1) SELECT count(*) FROM d",
        ("released", now),
    )
    return int(rows[0])


def _purge(st: Statements, before: dt.datetime, now: float, event: NewEvent) -> Plan:
    """In one transaction, as the table owner (the trigger checks both)."""
    events = st.events
    chain = CHAIN_KEY_SQL.format(call_id="call_id::text", event_id="event_id::text")
    found = yield Query(
        f"SELECT {chain}, seq, row_hash FROM {events} WHERE seq IN"
        f" (SELECT max(seq) FROM {events} WHERE created_at < %s GROUP BY {chain})",
        (before,),
        "all",
    )
    checkpoints = {key: {"seq": seq, "row_hash": h} for key, seq, h in found}
    yield Query("SET LOCAL dar.purge = 'on'", (), "none")
    row = yield Query(
        f"WITH d AS (DELETE FROM {events} WHERE created_at < %s RETURNING 1)"
        " SELECT count(*) FROM d",
        (before,),
    )
    yield Query("SET LOCAL dar.purge = 'off'", (), "none")
    yield Query(
        f'INSERT INTO "{st.schema}".agent_tool_purges (purged_at, before, rows,'
        " checkpoints) VALUES (to_timestamp(%s), %s, %s, %s::jsonb)",
        (now, before, row[0], json.dumps(checkpoints)),
        "none",
    )
    yield Query(st.append, _event_params(event))
    return int(row[0]), checkpoints


#: The operations that carry buffered hit rows along.
_WRITES = frozenset({_claim_op, _finish, _mark, _append})


def _check_connects(conninfo: str) -> None:
    """Fail now, with libpq's own words, on a bad URL or an unreachable server (a pool
    would only time out later, the reason buried in its log)."""
    try:
        psycopg.connect(conninfo).close()
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to Postgres: {exc}") from exc


def _transient(exc: BaseException) -> bool:
    """Errors after which repeating the (idempotent) statement is safe and may succeed."""
    if isinstance(exc, PoolClosed):
        return False  # our own pool was closed: retrying cannot help
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


class _Retry:
    """The retry policy both runners follow: transient errors are retried with jittered
    exponential backoff for ``RETRY_FOR`` seconds, then surface as ``StoreError``; any
    other error surfaces at once."""

    def __init__(self) -> None:
        self.deadline = time.monotonic() + RETRY_FOR
        self.attempt = 0

    def after(self, exc: Exception) -> float:
        """Seconds to wait before trying again; raises when not to try again."""
        if not _transient(exc):
            raise exc
        if time.monotonic() > self.deadline:
            raise StoreError(f"Postgres unavailable for {RETRY_FOR:.0f}s: {exc}") from exc
        self.attempt += 1
        return float(min(1.0, 0.02 * 2.0**self.attempt)) * (0.5 + random.random() / 2)


def _fetch(cur: Any, rows: str) -> Any:
    if rows == "one":
        return cur.fetchone()
    if rows in ("all", "dicts"):
        return cur.fetchall()
    return None


# --- sync ----------------------------------------------------------------------------------


class PostgresStore:
    """A store in Postgres, for many workers on many machines.

    ``target`` is a connection URL (a pool is opened and owned) or a psycopg
    ``ConnectionPool`` the application already has. Tables live in ``schema``.
    """

    dialect = "postgres"

    def __init__(
        self,
        target: str | ConnectionPool,
        *,
        schema: str = "public",
        migrate: bool = True,
        min_size: int = 1,
        max_size: int = 10,
        hash_chain: bool = True,
        hit_flush: float = 0.1,
    ) -> None:
        self.st = Statements(schema, hash_chain=hash_chain)
        self.hit_flush = hit_flush
        self._pending: list[NewEvent] = []
        self._pending_lock = threading.Lock()
        self._flusher = Flusher(self.flush, hit_flush)
        self._closed = threading.Event()
        if isinstance(target, str):
            _check_connects(target)
            self.pool = ConnectionPool(
                target, min_size=min_size, max_size=max_size, kwargs={"autocommit": True}, open=True
            )
            self._owns_pool = True
        else:
            self.pool = target
            self._owns_pool = False
        self._listener: _Listener | None = None
        self._salt: str | None = None
        self._listener_lock = threading.Lock()
        if migrate:
            self.migrate()

    def _run(self, plan: _Replayable, *, transaction: bool = False, carry: bool = True) -> Any:
        # A write carries the buffered hit rows along, pipelined before it: they keep their
        # order in the log and cost no extra round trip.
        batch: list[NewEvent] = []
        if carry and not transaction and plan.fn in _WRITES and self._pending:
            with self._pending_lock:
                batch, self._pending = self._pending, []
        retry = _Retry()
        while True:
            try:
                return self._run_once(plan, transaction, batch)
            except Exception as exc:
                try:
                    delay = retry.after(exc)
                except BaseException:
                    with self._pending_lock:
                        self._pending[:0] = batch  # appends are idempotent: keep them
                    raise
                time.sleep(delay)
                plan = _restart(plan)

    def _run_once(self, plan: _Replayable, transaction: bool, batch: list[NewEvent]) -> Any:
        with self.pool.connection() as conn:
            if not conn.autocommit and conn.info.transaction_status == 0:
                conn.autocommit = True
            tx = conn.transaction() if transaction else nullcontext()
            piped = conn.pipeline() if batch or plan.fn is _append_all else nullcontext()
            with tx, piped:
                for event in batch:
                    conn.execute(self.st.append, _event_params(event))
                try:
                    query = next(plan)
                    while True:
                        cur = (
                            conn.cursor(row_factory=dict_row)
                            if query.rows == "dicts"
                            else conn.cursor()
                        )
                        with cur:
                            cur.execute(query.sql, query.params)
                            result = _fetch(cur, query.rows)
                        query = plan.send(result)
                except StopIteration as stop:
                    return stop.value

    def migrate(self) -> list[str]:
        applied: list[str] = self._run(_Replayable(_migrate, self.st), transaction=True)
        return applied

    def lookup(
        self, key: str, input_hash: str, now: float, hit: NewEvent
    ) -> tuple[Claim | None, bool]:
        claim: Claim | None = self._run(_Replayable(_get_claim, self.st, key))
        if claim is None or not is_hit(claim, input_hash, now):
            return claim, False
        self._hit(hit)
        return claim, True

    def claim_or_lookup(
        self,
        key: str,
        tool_name: str,
        input_hash: str,
        owner: str,
        lease_until: float,
        now: float,
        started: NewEvent,
        hit: NewEvent,
    ) -> tuple[bool, Claim | None]:
        won, claim = self._run(
            _Replayable(
                _claim_or_lookup,
                self.st,
                key,
                tool_name,
                input_hash,
                owner,
                lease_until,
                now,
                started,
            )
        )
        if claim is not None and is_hit(claim, input_hash, now):
            self._hit(hit)
        return won, claim

    def _hit(self, hit: NewEvent) -> None:
        if self.hit_flush > 0:
            with self._pending_lock:
                self._pending.append(hit)
            self._flusher.start()
        else:
            self._run(_Replayable(_append, self.st, hit))

    def flush(self) -> None:
        """Write buffered hit rows now."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
        if batch:
            try:
                self._run(_Replayable(_append_all, self.st, batch), carry=False)
            except BaseException:
                with self._pending_lock:
                    self._pending[:0] = batch  # appends are idempotent: safe to send again
                raise

    def claim(
        self,
        key: str,
        tool_name: str,
        input_hash: str,
        owner: str,
        lease_until: float,
        now: float,
        expect_version: int | None,
        started: NewEvent,
    ) -> bool:
        won: bool = self._run(
            _Replayable(
                _claim_op,
                self.st,
                key,
                tool_name,
                input_hash,
                owner,
                lease_until,
                now,
                expect_version,
                started,
            )
        )
        return won

    def finish(
        self,
        key: str,
        owner: str,
        state: str,
        output: str | None,
        error: str | None,
        now: float,
        expires_at: float | None,
        event: NewEvent,
    ) -> bool:
        owned: bool = self._run(
            _Replayable(_finish, self.st, key, owner, state, output, error, now, expires_at, event)
        )
        return owned

    def mark(self, key: str, expect_version: int, state: str, event: NewEvent) -> bool:
        moved: bool = self._run(_Replayable(_mark, self.st, key, expect_version, state, event))
        return moved

    def resolve(
        self, key: str, executed: bool, output: str | None, now: float, event: NewEvent
    ) -> Claim:
        claim: Claim = self._run(
            _Replayable(_resolve, self.st, key, executed, output, now, event), transaction=True
        )
        return claim

    def append(self, event: NewEvent) -> None:
        self._run(_Replayable(_append, self.st, event))

    def get_claim(self, key: str) -> Claim | None:
        claim: Claim | None = self._run(_Replayable(_get_claim, self.st, key))
        return claim

    def events(
        self,
        *,
        correlation_id: str | None = None,
        tool: str | None = None,
        status: str | None = None,
        key: str | None = None,
        since: dt.datetime | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        self.flush()  # the log as read here includes this store's buffered hits
        events: list[Event] = self._run(
            _Replayable(_events, self.st, correlation_id, tool, status, key, since, limit)
        )
        return events

    def redaction_salt(self) -> str:
        if self._salt is None:
            self._salt = str(self._run(_Replayable(_redaction_salt, self.st)))
        return self._salt

    def chain_heads(self) -> dict[str, str]:
        heads: dict[str, str] = self._run(_Replayable(_chain_heads, self.st))
        return heads

    def checkpoints(self) -> dict[str, str]:
        points: dict[str, str] = self._run(_Replayable(_checkpoints, self.st))
        return points

    def gc(self, now: float) -> int:
        n: int = self._run(_Replayable(_gc, self.st, now))
        return n

    def purge(self, before: dt.datetime, now: float, event: NewEvent) -> tuple[int, dict[str, Any]]:
        result: tuple[int, dict[str, Any]] = self._run(
            _Replayable(_purge, self.st, before, now, event), transaction=True
        )
        return result

    def wait(self, key: str, seconds: float) -> float:
        """Sleep until ``key`` is notified (LISTEN/NOTIFY) or ``seconds`` pass."""
        with self._listener_lock:
            if self._listener is None:
                self._listener = _Listener(str(self.pool.conninfo), self.st.channel)
        started = time.monotonic()
        self._listener.wait(key, seconds)
        return time.monotonic() - started

    def close(self) -> None:
        if self._closed.is_set():
            return
        self.flush()
        self._closed.set()
        self._flusher.stop()
        if self._listener is not None:
            self._listener.stop()
        if self._owns_pool:
            self.pool.close()


class _Listener:
    """One LISTEN connection per store; wakes threads waiting on a key. If it fails, the
    waiters still wake at their timeout (polling), so correctness never depends on it."""

    def __init__(self, conninfo: str, channel: str) -> None:
        self.conninfo, self.channel = conninfo, channel
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dar-listen", daemon=True)
        self._thread.start()

    def wait(self, key: str, seconds: float) -> None:
        with self._lock:
            event = self._events.setdefault(key, threading.Event())
        event.wait(seconds)
        with self._lock:
            if self._events.get(key) is event and event.is_set():
                del self._events[key]

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(self.channel)))
                    while not self._stopped.is_set():
                        for note in conn.notifies(timeout=0.5):
                            with self._lock:
                                event = self._events.get(note.payload)
                            if event is not None:
                                event.set()
            except Exception:
                self._stopped.wait(0.5)  # reconnect; waiters poll meanwhile

    def stop(self) -> None:
        self._stopped.set()


# --- async ---------------------------------------------------------------------------------


class AsyncPostgresStore:
    """``PostgresStore`` for asyncio, on psycopg's ``AsyncConnectionPool``."""

    dialect = "postgres"

    def __init__(
        self,
        target: str | AsyncConnectionPool,
        *,
        schema: str = "public",
        migrate: bool = True,
        min_size: int = 1,
        max_size: int = 10,
        hash_chain: bool = True,
        hit_flush: float = 0.1,
    ) -> None:
        self.st = Statements(schema, hash_chain=hash_chain)
        self.hit_flush = hit_flush
        self._pending: list[NewEvent] = []
        self._flusher: asyncio.Task[None] | None = None
        if isinstance(target, str):
            self.pool = AsyncConnectionPool(
                target,
                min_size=min_size,
                max_size=max_size,
                kwargs={"autocommit": True},
                open=False,
            )
            self._owns_pool = True
        else:
            self.pool = target
            self._owns_pool = False
        self._migrate_on_open = migrate
        self._pool_open = False
        self._ready = False
        self._open_lock: asyncio.Lock | None = None
        self._waiters: dict[str, asyncio.Event] = {}
        self._salt: str | None = None
        self._listen_task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Open the pool and migrate (once, however many tasks ask at the same time)."""
        if self._ready:
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._ready:
                return
            if self._migrate_on_open:
                await self.migrate()
            else:
                await self._open_pool()
            self._ready = True

    async def _open_pool(self) -> None:
        if self._owns_pool and not self._pool_open:
            try:
                await (await psycopg.AsyncConnection.connect(str(self.pool.conninfo))).close()
            except psycopg.Error as exc:
                raise StoreError(f"cannot connect to Postgres: {exc}") from exc
            await self.pool.open()
            self._pool_open = True

    async def _run(
        self, plan: _Replayable, *, transaction: bool = False, carry: bool = True
    ) -> Any:
        if not self._ready:
            await self.open()
        batch: list[NewEvent] = []
        if carry and not transaction and plan.fn in _WRITES and self._pending:
            batch, self._pending = self._pending, []
        try:
            return await self._retrying(plan, transaction, batch)
        except BaseException:
            self._pending[:0] = batch
            raise

    async def _retrying(
        self, plan: _Replayable, transaction: bool, batch: list[NewEvent] | None = None
    ) -> Any:
        retry = _Retry()
        while True:
            try:
                return await self._run_once(plan, transaction, batch or [])
            except Exception as exc:
                await asyncio.sleep(retry.after(exc))
                plan = _restart(plan)

    async def _run_once(self, plan: _Replayable, transaction: bool, batch: list[NewEvent]) -> Any:
        async with self.pool.connection() as conn:
            if not conn.autocommit and conn.info.transaction_status == 0:
                await conn.set_autocommit(True)
            tx = conn.transaction() if transaction else nullcontext()
            piped = conn.pipeline() if batch or plan.fn is _append_all else nullcontext()
            async with tx, piped:
                for event in batch:
                    await conn.execute(self.st.append, _event_params(event))
                try:
                    query = next(plan)
                    while True:
                        cur = (
                            conn.cursor(row_factory=dict_row)
                            if query.rows == "dicts"
                            else conn.cursor()
                        )
                        async with cur:
                            await cur.execute(query.sql, query.params)
                            result = await _afetch(cur, query.rows)
                        query = plan.send(result)
                except StopIteration as stop:
                    return stop.value

    async def migrate(self) -> list[str]:
        await self._open_pool()
        applied: list[str] = await self._retrying(_Replayable(_migrate, self.st), True)
        return applied

    async def lookup(
        self, key: str, input_hash: str, now: float, hit: NewEvent
    ) -> tuple[Claim | None, bool]:
        claim: Claim | None = await self._run(_Replayable(_get_claim, self.st, key))
        if claim is None or not is_hit(claim, input_hash, now):
            return claim, False
        await self._hit(hit)
        return claim, True

    async def claim_or_lookup(
        self,
        key: str,
        tool_name: str,
        input_hash: str,
        owner: str,
        lease_until: float,
        now: float,
        started: NewEvent,
        hit: NewEvent,
    ) -> tuple[bool, Claim | None]:
        won, claim = await self._run(
            _Replayable(
                _claim_or_lookup,
                self.st,
                key,
                tool_name,
                input_hash,
                owner,
                lease_until,
                now,
                started,
            )
        )
        if claim is not None and is_hit(claim, input_hash, now):
            await self._hit(hit)
        return won, claim

    async def _hit(self, hit: NewEvent) -> None:
        if self.hit_flush > 0:
            self._pending.append(hit)
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush_loop())
        else:
            await self._run(_Replayable(_append, self.st, hit))

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.hit_flush)
            await self.flush()

    async def flush(self) -> None:
        """Write buffered hit rows now."""
        batch, self._pending = self._pending, []
        if batch:
            try:
                await self._run(_Replayable(_append_all, self.st, batch), carry=False)
            except BaseException:
                self._pending[:0] = batch  # appends are idempotent: safe to send again
                raise

    async def claim(
        self,
        key: str,
        tool_name: str,
        input_hash: str,
        owner: str,
        lease_until: float,
        now: float,
        expect_version: int | None,
        started: NewEvent,
    ) -> bool:
        won: bool = await self._run(
            _Replayable(
                _claim_op,
                self.st,
                key,
                tool_name,
                input_hash,
                owner,
                lease_until,
                now,
                expect_version,
                started,
            )
        )
        return won

    async def finish(
        self,
        key: str,
        owner: str,
        state: str,
        output: str | None,
        error: str | None,
        now: float,
        expires_at: float | None,
        event: NewEvent,
    ) -> bool:
        owned: bool = await self._run(
            _Replayable(_finish, self.st, key, owner, state, output, error, now, expires_at, event)
        )
        return owned

    async def mark(self, key: str, expect_version: int, state: str, event: NewEvent) -> bool:
        moved: bool = await self._run(
            _Replayable(_mark, self.st, key, expect_version, state, event)
        )
        return moved

    async def resolve(
        self, key: str, executed: bool, output: str | None, now: float, event: NewEvent
    ) -> Claim:
        claim: Claim = await self._run(
            _Replayable(_resolve, self.st, key, executed, output, now, event), transaction=True
        )
        return claim

    async def append(self, event: NewEvent) -> None:
        await self._run(_Replayable(_append, self.st, event))

    async def get_claim(self, key: str) -> Claim | None:
        claim: Claim | None = await self._run(_Replayable(_get_claim, self.st, key))
        return claim

    async def events(
        self,
        *,
        correlation_id: str | None = None,
        tool: str | None = None,
        status: str | None = None,
        key: str | None = None,
        since: dt.datetime | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        await self.flush()  # the log as read here includes this store's buffered hits
        events: list[Event] = await self._run(
            _Replayable(_events, self.st, correlation_id, tool, status, key, since, limit)
        )
        return events

    async def redaction_salt(self) -> str:
        if self._salt is None:
            self._salt = str(await self._run(_Replayable(_redaction_salt, self.st)))
        return self._salt

    async def wait(self, key: str, seconds: float) -> float:
        """Sleep until ``key`` is notified (LISTEN/NOTIFY) or ``seconds`` pass."""
        if self._listen_task is None or self._listen_task.done():
            self._listen_task = asyncio.create_task(self._listen())
        event = self._waiters.setdefault(key, asyncio.Event())
        started = time.monotonic()
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        if event.is_set() and self._waiters.get(key) is event:
            del self._waiters[key]
        return time.monotonic() - started

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    str(self.pool.conninfo), autocommit=True
                ) as conn:
                    await conn.execute(
                        pgsql.SQL("LISTEN {}").format(pgsql.Identifier(self.st.channel))
                    )
                    async for note in conn.notifies():
                        event = self._waiters.get(note.payload)
                        if event is not None:
                            event.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.5)  # reconnect; waiters poll meanwhile

    async def close(self) -> None:
        if self._ready:
            await self.flush()
        if self._flusher is not None:
            self._flusher.cancel()
        if self._listen_task is not None:
            self._listen_task.cancel()
        if self._owns_pool and self._pool_open:
            await self.pool.close()


# --- plumbing ------------------------------------------------------------------------------


class _Replayable:
    """A plan that can be started again from scratch after a transient fault."""

    def __init__(self, fn: Callable[..., Plan], *args: Any) -> None:
        self.fn, self.args = fn, args
        self.gen = fn(*args)

    def __iter__(self) -> _Replayable:
        return self

    def __next__(self) -> Query:
        query: Query = next(self.gen)
        return query

    def send(self, value: Any) -> Query:
        query: Query = self.gen.send(value)
        return query


def _restart(plan: _Replayable) -> _Replayable:
    plan.gen.close()
    return _Replayable(plan.fn, *plan.args)


async def _afetch(cur: Any, rows: str) -> Any:
    if rows == "one":
        return await cur.fetchone()
    if rows in ("all", "dicts"):
        return await cur.fetchall()
    return None
