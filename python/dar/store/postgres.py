"""The Postgres store: production mode, many workers on many machines.

Postgres is the distributed engine: every claim is one atomic statement, so exactly-once
holds across every process that shares the database, with nothing else to deploy. The SQL
and the plan of each operation are in `dar.store.postgres_sql`; this engine runs plans on
a psycopg `ConnectionPool`, retries transient faults, buffers cache-hit rows and wakes
waiters through `dar.store.listener`. `AsyncRuntime` uses this same store from threads.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import nullcontext, suppress
from typing import Any

import psycopg
from psycopg.adapt import Transformer
from psycopg.generators import execute
from psycopg.pq import ExecStatus
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from dar.core.ops import (
    Append,
    CheckGuards,
    DecideApproval,
    Finish,
    GetApproval,
    GetClaim,
    GetRun,
    GetSaga,
    GrantAnswer,
    GuardDecision,
    ListApprovals,
    ListRuns,
    ListSagas,
    LogFilter,
    Lookup,
    Mark,
    RequestApproval,
    ReserveGuards,
    Resolve,
    SaveRun,
    SaveSaga,
    SettleGuards,
    Take,
    TakeOrLookup,
    UseGrant,
)
from dar.core.verdict import is_hit
from dar.errors import ConfigurationError, StoreError
from dar.records import Approval, Claim, Event, NewEvent, RunRecord, SagaRecord
from dar.store import approvals, sagas
from dar.store import guards as guard_rows
from dar.store import postgres_sql as q
from dar.store import runs as run_rows
from dar.store.flusher import Flusher
from dar.store.listener import Listener
from dar.store.sql import SessionFilter, SessionRow

RETRY_FOR = 15.0  # seconds a transient fault is retried before it surfaces
POOL_MODES = ("session", "transaction")  # what the URL leads to: a session, or a pooler's
PARTITIONS_AHEAD = 1  # months of the log partitioned ahead of the current one

#: The operations that carry buffered hit rows along.
_WRITES = frozenset({q.take, q.finish, q.mark, q.append})
COMMAND_OK, TUPLES_OK = ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK


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
    if isinstance(exc, PoolTimeout):
        return True  # every connection busy (or none to be had): may free up
    if isinstance(exc, (psycopg.errors.DataError, psycopg.errors.ProgramLimitExceeded)):
        return False  # the same value is refused again: fail at once
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


class _Retry:
    """Transient errors are retried with jittered exponential backoff for ``RETRY_FOR``
    seconds, then surface as ``StoreError``; any other error surfaces at once."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.deadline = time.monotonic() + budget
        self.attempt = 0

    def left(self) -> float:
        """Seconds of the budget still left (at least a little, for one more try)."""
        return max(0.05, self.deadline - time.monotonic())

    def after(self, exc: Exception) -> float:
        """Seconds to wait before trying again; raises when not to try again."""
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            raise StoreError(
                f"Postgres refused this role: {exc.diag.message_primary or exc}. Grant it "
                "(docs/postgres.md lists the least-privilege grants), or run `dar migrate` "
                "as the schema's owner if the schema is not migrated"
            ) from exc
        if isinstance(exc, psycopg.Error) and not _transient(exc):
            # Bad input is refused before it gets here: what Postgres refuses now is a fault
            # of the store (a value it cannot hold, a limit), reported as one.
            what = exc.diag.message_primary if isinstance(exc, psycopg.DatabaseError) else None
            raise StoreError(
                f"Postgres refused the statement ({type(exc).__name__}): {what or exc}"
            ) from exc
        if not _transient(exc):
            raise exc
        if time.monotonic() > self.deadline:
            raise StoreError(f"Postgres unavailable for {self.budget:.1f}s: {exc}") from exc
        self.attempt += 1
        return float(min(1.0, 0.02 * 2.0**self.attempt)) * (0.5 + random.random() / 2)


def _text(value: Any) -> bytes | None:
    """A parameter in Postgres's text form (the statements cast what context does not type)."""
    if value is None:
        return None
    if isinstance(value, str):
        if "\x00" in value:  # libpq would cut the text short there: refuse, as psycopg does
            raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        return value.encode()
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, float):
        return repr(value).encode()
    return str(value).encode()


def _check(conn: psycopg.Connection[Any], result: Any, expected: int) -> Any:
    """The result, or the error the server sent as the exception psycopg would raise."""
    if result.status != expected:
        raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
    return result


def _fetch(cur: Any, rows: str) -> Any:
    if rows == "one":
        return cur.fetchone()
    if rows in ("all", "dicts"):
        return cur.fetchall()
    return None


class _Replayable:
    """A plan that can be started again from scratch after a transient fault."""

    def __init__(self, fn: Callable[..., q.Queries], *args: Any) -> None:
        self.fn, self.args = fn, args
        self.gen = fn(*args)

    def restart(self) -> _Replayable:
        self.gen.close()
        return _Replayable(self.fn, *self.args)


class PostgresStore:
    """A store in Postgres, for many workers on many machines.

    ``target`` is a connection URL (a pool is opened and owned) or a psycopg
    ``ConnectionPool`` the application already has. Tables live in ``schema``.
    ``retry_for``: how many seconds transient faults (a lost connection, a restarting
    server, every pooled connection busy) are retried before ``StoreError``.
    ``pool_mode="transaction"``: the URL is a pooler that lends a server connection per
    transaction (PgBouncer's transaction pooling), so nothing may outlive a transaction:
    no prepared statements, and no LISTEN (waiters poll instead of being notified).
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
        retry_for: float = RETRY_FOR,
        pool_mode: str = "session",
    ) -> None:
        if pool_mode not in POOL_MODES:
            raise ConfigurationError(
                f"pool_mode={pool_mode!r}: use 'session' (a direct connection, or a pooler "
                "in session mode) or 'transaction' (PgBouncer's transaction pooling)"
            )
        self.notifies = pool_mode == "session"
        self.st = q.Statements(schema, hash_chain=hash_chain)
        self.retry_for = retry_for
        self.hit_flush = hit_flush
        self._pending: list[NewEvent] = []
        self._pending_lock = threading.Lock()
        self._flusher = Flusher(self.flush, hit_flush)
        self._closed = threading.Event()
        if isinstance(target, str):
            _check_connects(target)
            kwargs: dict[str, Any] = {"autocommit": True}
            if not self.notifies:
                kwargs["prepare_threshold"] = None  # a prepared statement is the session's
            self.pool = ConnectionPool(
                target, min_size=min_size, max_size=max_size, kwargs=kwargs, open=True
            )
            self._owns_pool = True
        else:
            self.pool = target
            self._owns_pool = False
        self.max_size = self.pool.max_size
        self._listener: Listener | None = None
        #: The hot statements prepared on each pooled connection (see `_hot`).
        self._prepared: weakref.WeakKeyDictionary[psycopg.Connection[Any], set[bytes]] = (
            weakref.WeakKeyDictionary()
        )
        self._salt: str | None = None
        self._listener_lock = threading.Lock()
        # An unclosed store writes its buffered rows at interpreter exit (see `_at_exit`).
        self._finalizer = weakref.finalize(self, _at_exit, weakref.ref(self))
        if migrate:
            self.migrate()
            self._add_partitions(time.time())

    def _add_partitions(self, now: float) -> None:
        """The log's month partitions, ahead of need (this month and the next), created
        here and by `gc` and `purge` — never by an insert (a row no month holds lands in
        the DEFAULT partition). A role that may not create tables leaves it to the owner."""
        with suppress(StoreError):  # refused to a role without DDL rights: rows go to DEFAULT
            self.add_partitions(now)

    def add_partitions(self, now: float, ahead: int = PARTITIONS_AHEAD) -> list[str]:
        """Create the missing month partitions of the log from ``now``'s month to ``ahead``
        months later; returns the names created."""
        names: list[str] = self._run(_Replayable(q.add_partitions, self.st, now, ahead))
        return names

    # --- running plans -----------------------------------------------------------------------

    def _run(
        self,
        plan: _Replayable,
        *,
        transaction: bool = False,
        carry: bool = True,
        batch: list[NewEvent] | None = None,
    ) -> Any:
        # A write carries the buffered hit rows along, written first on its connection:
        # they keep their order in the log and cost no extra connection checkout.
        batch = batch or []
        if carry and not transaction and plan.fn in _WRITES and self._pending:
            with self._pending_lock:
                batch, self._pending = self._pending, []
        retry = _Retry(self.retry_for)
        while True:
            try:
                return self._run_once(plan, transaction, batch, retry.left())
            except Exception as exc:
                try:
                    delay = retry.after(exc)
                except BaseException:
                    with self._pending_lock:
                        self._pending[:0] = batch  # appends are idempotent: keep them
                    raise
                time.sleep(delay)
                plan = plan.restart()

    def _run_once(
        self, plan: _Replayable, transaction: bool, batch: list[NewEvent], wait: float
    ) -> Any:
        with self.pool.connection(timeout=wait) as conn:
            if not conn.autocommit and conn.info.transaction_status == 0:
                conn.autocommit = True
            if batch:
                self._append_batch(conn, batch)
            with conn.transaction() if transaction else nullcontext():
                try:
                    query = next(plan.gen)
                    while True:
                        # (A hot statement answers one row: asked for all, the cursor's way.)
                        hot = self.st.hot.get(query.sql) if query.rows in ("one", "none") else None
                        if hot is not None:
                            result = self._hot(conn, hot, query.params)
                        else:
                            result = self._cursor(conn, query)
                        query = plan.gen.send(result)
                except StopIteration as stop:
                    return stop.value

    def _append_batch(self, conn: psycopg.Connection[Any], batch: list[NewEvent]) -> None:
        """Buffered hit rows, pipelined in one transaction: one round trip and one commit
        (one WAL flush) for the lot, where a row per transaction cost a flush each. The
        rows go grouped by chain (a stable sort keeps each chain's order), so every
        writer's transaction takes chain heads in the same order: no deadlock between two
        processes' flushes; every other writer holds one head at a time."""
        with conn.pipeline():  # no Sync in between: one implicit transaction, up to the last
            for event in sorted(batch, key=q.chain_of):
                conn.execute(self.st.append, q.event_params(event))

    def _cursor(self, conn: psycopg.Connection[Any], query: q.Query) -> Any:
        cur = conn.cursor(row_factory=dict_row) if query.rows == "dicts" else conn.cursor()
        with cur:
            cur.execute(query.sql, query.params)
            return _fetch(cur, query.rows)

    @staticmethod
    def _prepared_row(
        conn: psycopg.Connection[Any], hot: q.Hot, values: list[bytes | None], prepared: set[bytes]
    ) -> Any:
        pgconn = conn.pgconn
        if hot.name not in prepared:
            pgconn.send_prepare(hot.name, hot.text, hot.types)
            _check(conn, conn.wait(execute(pgconn))[-1], COMMAND_OK)
            prepared.add(hot.name)
        pgconn.send_query_prepared(hot.name, values)
        return _check(conn, conn.wait(execute(pgconn))[-1], TUPLES_OK)

    def _hot(self, conn: psycopg.Connection[Any], hot: q.Hot, params: Any) -> Any:
        """One statement of the hot path, straight on libpq: prepared once per connection
        (unless behind a transaction pooler), parameters sent as text, its one row loaded
        by psycopg's own loaders. A cursor's machinery costs about as much CPU as the
        statement's round trip, on every call; this path does without it."""
        pgconn = conn.pgconn
        values = [_text(params[name]) for name in hot.params]
        if not self.notifies:
            pgconn.send_query_params(hot.text, values, hot.types)
            result = _check(conn, conn.wait(execute(pgconn))[-1], TUPLES_OK)
        else:
            prepared = self._prepared.setdefault(conn, set())
            try:
                result = self._prepared_row(conn, hot, values, prepared)
            except psycopg.errors.InvalidSqlStatementName:
                # Someone ran DEALLOCATE or DISCARD ALL on this connection (an application's
                # own pool, a pooler's reset): prepare again.
                prepared.clear()
                result = self._prepared_row(conn, hot, values, prepared)
        if result.ntuples == 0:
            return None
        loader = Transformer(conn)
        loader.set_pgresult(result)
        return loader.load_row(0, tuple)

    # --- the operations ----------------------------------------------------------------------

    def migrate(self) -> list[str]:
        try:
            applied: list[str] = self._run(_Replayable(q.migrate, self.st), transaction=True)
        except StoreError as exc:
            if isinstance(exc.__cause__, psycopg.errors.InsufficientPrivilege):
                raise StoreError(
                    f"schema {self.st.schema!r} is not migrated and this role may not "
                    "migrate it: run `dar migrate --db URL` once as the schema's owner"
                ) from exc.__cause__
            raise
        return applied

    def get_claim(self, op: GetClaim) -> Claim | None:
        claim: Claim | None = self._run(_Replayable(q.get_claim, self.st, op))
        return claim

    def lookup(self, op: Lookup) -> tuple[Claim | None, bool]:
        claim = self.get_claim(GetClaim(op.key))
        if not is_hit(claim, op.input_hash, op.now):
            return claim, False
        self._hit(op.hit)
        return claim, True

    def take_or_lookup(self, op: TakeOrLookup) -> tuple[bool, Claim | None]:
        won, claim = self._run(_Replayable(q.take_or_lookup, self.st, op))
        if is_hit(claim, op.take.input_hash, op.take.now):
            self._hit(op.hit)
        return won, claim

    def _hit(self, hit: NewEvent) -> None:
        if self.hit_flush > 0:
            with self._pending_lock:
                self._pending.append(hit)
            self._flusher.start()
        else:
            self._run(_Replayable(q.append, self.st, Append(hit)))

    def flush(self) -> None:
        """Write buffered hit rows now."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
        if batch:
            try:
                self._run(_Replayable(q.flushed, self.st), carry=False, batch=batch)
            except BaseException:
                with self._pending_lock:
                    self._pending[:0] = batch  # appends are idempotent: safe to send again
                raise

    def take(self, op: Take) -> bool:
        won: bool = self._run(_Replayable(q.take, self.st, op))
        return won

    def finish(self, op: Finish) -> bool:
        owned: bool = self._run(_Replayable(q.finish, self.st, op))
        return owned

    def mark(self, op: Mark) -> bool:
        moved: bool = self._run(_Replayable(q.mark, self.st, op))
        return moved

    def resolve(self, op: Resolve) -> Claim:
        claim: Claim = self._run(_Replayable(q.resolve, self.st, op), transaction=True)
        return claim

    def append(self, op: Append) -> None:
        self._run(_Replayable(q.append, self.st, op))

    def events(self, filter: LogFilter) -> list[Event]:
        self.flush()  # the log as read here includes this store's buffered hits
        events: list[Event] = self._run(_Replayable(q.events, self.st, filter))
        return events

    def redaction_salt(self) -> str:
        if self._salt is None:
            self._salt = str(self._run(_Replayable(q.redaction_salt, self.st)))
        return self._salt

    # --- approvals ---------------------------------------------------------------------------

    def _shared(self, fn: Any, table: str, op: Any) -> Any:
        return self._run(_Replayable(q.shared_queries, self.st, fn, table, op), transaction=True)

    def _approvals(self, fn: Any, op: Any) -> Any:
        return self._shared(fn, "approvals", op)

    def request_approval(self, op: RequestApproval) -> str:
        answer: str = self._approvals(approvals.request, op)
        return answer

    def use_grant(self, op: UseGrant) -> GrantAnswer:
        answer: GrantAnswer = self._approvals(approvals.use_grant, op)
        return answer

    def get_approval(self, op: GetApproval) -> Approval | None:
        answer: Approval | None = self._approvals(approvals.get, op)
        return answer

    def decide_approval(self, op: DecideApproval) -> Approval | None:
        answer: Approval | None = self._approvals(approvals.decide, op)
        return answer

    def approvals(self, op: ListApprovals) -> list[Approval]:
        answer: list[Approval] = self._approvals(approvals.listing, op)
        return answer

    def save_saga(self, op: SaveSaga) -> bool:
        answer: bool = self._shared(sagas.save, "sagas", op)
        return answer

    def get_saga(self, op: GetSaga) -> SagaRecord | None:
        answer: SagaRecord | None = self._shared(sagas.get, "sagas", op)
        return answer

    def sagas(self, op: ListSagas) -> list[SagaRecord]:
        answer: list[SagaRecord] = self._shared(sagas.listing, "sagas", op)
        return answer

    def save_run(self, op: SaveRun) -> bool:
        answer: bool = self._shared(run_rows.save, "runs", op)
        return answer

    def get_run(self, op: GetRun) -> RunRecord | None:
        answer: RunRecord | None = self._shared(run_rows.get, "runs", op)
        return answer

    def runs(self, op: ListRuns) -> list[RunRecord]:
        answer: list[RunRecord] = self._shared(run_rows.listing, "runs", op)
        return answer

    # --- guards ------------------------------------------------------------------------------

    def reserve_guards(self, op: ReserveGuards) -> GuardDecision:
        answer: GuardDecision = self._shared(guard_rows.reserve, "guards", op)
        return answer

    def check_guards(self, op: CheckGuards) -> GuardDecision:
        answer: GuardDecision = self._shared(guard_rows.reserve, "guards", op)
        return answer

    def settle_guards(self, op: SettleGuards) -> None:
        # One idempotent statement: autocommit, one round trip, safe to send again.
        self._run(_Replayable(q.shared_queries, self.st, guard_rows.settle, "guards", op))

    def on_change(self, key: str, wake: Callable[[], None]) -> Callable[[], None] | None:
        """Wake on ``key``'s NOTIFY (sent by every statement that moves a claim); None
        behind a transaction pooler, where a LISTEN would end with its transaction."""
        if not self.notifies:
            return None
        with self._listener_lock:
            if self._listener is None:
                self._listener = Listener(str(self.pool.conninfo), self.st.channel)
        return self._listener.subscribe(key, wake)

    # --- postmortem and retention ------------------------------------------------------------

    def chain_heads(self, only: str | None = None) -> dict[str, str]:
        heads: dict[str, str] = self._run(_Replayable(q.chain_heads, self.st, only))
        return heads

    def checkpoints(self) -> dict[str, str]:
        points: dict[str, str] = self._run(_Replayable(q.checkpoints, self.st))
        return points

    def purge_records(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = self._run(_Replayable(q.purge_records, self.st))
        return records

    def sessions(self, filter: SessionFilter) -> list[SessionRow]:
        self.flush()
        found: list[SessionRow] = self._run(
            _Replayable(q.sessions, self.st, filter), transaction=True
        )
        return found

    def claims(self) -> list[Claim]:
        found: list[Claim] = self._run(_Replayable(q.claims, self.st))
        return found

    def gc(self, now: float) -> int:
        """Remove expired and released claims; and partition the log ahead (`dar gc`, run
        on a schedule by the owner, keeps months ready before rows arrive; a role that
        may only delete claims still removes them)."""
        n: int = self._run(_Replayable(q.gc, self.st, now))
        self._add_partitions(now)
        return n

    def purge(self, before: dt.datetime, now: float, event: NewEvent) -> tuple[int, dict[str, Any]]:
        self._add_partitions(now)
        result: tuple[int, dict[str, Any]] = self._run(
            _Replayable(q.purge, self.st, before, now, event), transaction=True
        )
        return result

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._finalizer.detach()
        self.flush()
        self._closed.set()
        self._flusher.stop()
        if self._listener is not None:
            self._listener.stop()
        if self._owns_pool:
            self.pool.close()


def _at_exit(ref: weakref.ref[PostgresStore]) -> None:
    """At interpreter exit, an unclosed store writes its buffered rows — trying for at most
    two seconds, the server may be gone — and closes, so no thread of it holds the exit up."""
    store = ref()
    if store is None:
        return
    store.retry_for = min(store.retry_for, 2.0)
    with suppress(Exception):  # nothing is left to tell at exit
        store.close()
