"""The SQLite store: WAL, `BEGIN IMMEDIATE` and a busy timeout; durable by default.

sqlite-utils opens the database and serves the read queries; the hot path uses the raw
connection with prepared statements. One connection per store, guarded by a lock, so a
store may be shared by threads; several processes share a database file safely.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sqlite_utils

from dar._core import canonical_json
from dar.audit.chain import CHAIN_KEY_SQL, chain_key, content_hash, link
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
from dar.records import EVENT_COLUMNS, Approval, Claim, Event, NewEvent, RunRecord, SagaRecord
from dar.store import approvals, sagas, steps
from dar.store import guards as guard_rows
from dar.store import runs as run_rows
from dar.store.base import seconds_option
from dar.store.flusher import Flusher
from dar.store.migrate import migration_files
from dar.store.sql import (
    CLAIM_COLUMNS,
    SessionFilter,
    SessionRow,
    check_resolvable,
    events_query,
    session_rows,
    sessions_query,
)

_INSERT_EVENT = (
    f"INSERT INTO agent_tool_events ({', '.join(EVENT_COLUMNS)}, row_hash) "
    f"VALUES ({', '.join('?' * (len(EVENT_COLUMNS) + 1))})"
)
_SELECT_CLAIM = (
    f"SELECT {', '.join(CLAIM_COLUMNS)} FROM agent_tool_claims WHERE idempotency_key = ?"
)
APPROVALS = "agent_tool_approvals"
SAGAS = "agent_tool_sagas"
RUNS = "agent_tool_runs"
GUARDS = "agent_tool_guards"
_SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")


def _row(event: NewEvent) -> tuple[Any, ...]:
    return tuple(getattr(event, name) for name in EVENT_COLUMNS)


def _columns(event: NewEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in EVENT_COLUMNS}


class SQLiteStore:
    """A store in one SQLite file (or ``":memory:"``).

    ``busy_timeout`` is how long SQLite itself waits for a lock; ``retry_for`` how long a
    write keeps trying before it fails with ``StoreError``. ``synchronous`` is SQLite's
    durability setting: ``FULL`` (default) makes every recorded outcome survive power loss;
    ``NORMAL`` in WAL mode survives a crash of the process but may lose the last commits on
    power loss.

    ``hit_flush`` (seconds, default 0.1): the ``cached`` rows of cache hits record no effect,
    so they are buffered and written with the next write transaction, or by a background
    flush at most this long after the hit, at ``close()``, and before the log is read here.
    A crash of the process can lose the hit rows of its last ``hit_flush`` seconds, never a
    claim, an outcome or a refusal (those are durable before ``execute`` returns). ``0``
    writes every hit row durably before returning, at the cost of one commit per hit.
    """

    dialect = "sqlite"

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 5.0,
        retry_for: float = 15.0,
        hash_chain: bool = True,
        hit_flush: float = 0.1,
        migrate: bool = True,
    ) -> None:
        sync = synchronous.upper()
        if sync not in _SYNC_MODES:
            raise ConfigurationError(
                f"synchronous must be one of {_SYNC_MODES}, not {synchronous!r}"
            )
        self.path = str(path)
        self.retry_for = retry_for
        self.hash_chain = hash_chain
        self._salt: str | None = None
        self.hit_flush = hit_flush
        self._sync, self._busy_timeout = sync, busy_timeout
        self._closed = threading.Event()
        #: Outcomes whose write failed (disk full, ...): written first by the next write, so
        #: a call that ran is never taken for a crashed one while this process lives.
        self._unwritten: list[Finish] = []
        self._connect()
        _OPEN.add(self)
        if migrate:
            self.migrate()

    def _connect(self) -> None:
        """A fresh connection, lock, buffer and flusher (also in a forked child: the
        parent's connection and its buffered rows stay the parent's)."""
        self._lock = threading.RLock()
        self._pending: list[NewEvent] = []
        self._flusher = Flusher(self.flush, self.hit_flush)
        with _errors(self.path):
            self._conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=self._busy_timeout,
            )
            self.db = sqlite_utils.Database(self._conn)
            if self.path != ":memory:":
                self.db.enable_wal()
            self._conn.execute(f"PRAGMA synchronous = {self._sync}")
            self._conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")

    @staticmethod
    def path_of(url: str) -> str:
        """The file a ``sqlite:`` URL names (``":memory:"`` for none)."""
        parts = urlsplit(url)
        path = parts.netloc + parts.path
        if path.startswith("/") and parts.netloc == "":
            path = path[1:]  # sqlite:///rel.db -> rel.db ; sqlite:////abs -> /abs
        return ":memory:" if path in ("", ":memory:", "/:memory:") else path

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> SQLiteStore:
        """``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``sqlite://:memory:``;
        query options ``synchronous`` and ``busy_timeout`` (seconds)."""
        parts = urlsplit(url)
        if parts.scheme != "sqlite":
            raise ConfigurationError(f"not a sqlite URL: {url!r}")
        path = cls.path_of(url)
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if "synchronous" in options:
            kwargs.setdefault("synchronous", options["synchronous"])
        if "busy_timeout" in options:
            kwargs.setdefault("busy_timeout", seconds_option(options, "busy_timeout"))
        if "hit_flush" in options:
            kwargs.setdefault("hit_flush", seconds_option(options, "hit_flush"))
        return cls(path, **kwargs)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with BEGIN IMMEDIATE so it never upgrades a read lock.

        Another process may hold the write lock for longer than the busy timeout; taking it
        is retried until ``retry_for`` seconds have passed, then ``StoreError`` is raised
        with nothing written. (An outcome must not be dropped because a lock was busy.)
        """
        with self._lock, _errors(self.path):
            conn = self._conn
            self._begin(conn)
            unwritten, self._unwritten = self._unwritten, []
            pending, self._pending = self._pending, []
            try:
                # A failed outcome first, then buffered hit rows, ride along in order.
                for op in unwritten:
                    self._finish(conn, op)
                for event in pending:
                    self._insert(conn, event)
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite rolls back by itself on some errors
                    conn.execute("ROLLBACK")
                self._pending[:0] = pending
                self._unwritten[:0] = unwritten
                raise

    def _begin(self, conn: sqlite3.Connection) -> None:
        deadline = time.monotonic() + self.retry_for
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"SQLite database {self.path} stayed locked for "
                        f"{self.retry_for:.0f}s: {exc}"
                    ) from exc
                time.sleep(0.01)

    def _insert(self, conn: sqlite3.Connection, event: NewEvent) -> None:
        """Append one row, linked into its correlation id's hash chain. Runs inside a write
        transaction, which SQLite serializes, so reading the head and moving it is safe."""
        row_hash = None
        if self.hash_chain:
            key = chain_key(event.correlation_id, event.call_id or event.event_id)
            found = conn.execute(
                "SELECT head FROM agent_tool_chain_heads WHERE correlation_id = ?", (key,)
            ).fetchone()
            content = content_hash(_columns(event), json_as_text=True)
            row_hash = link(None if found is None else found[0], content)
            conn.execute(
                "INSERT INTO agent_tool_chain_heads (correlation_id, head) VALUES (?, ?)"
                " ON CONFLICT (correlation_id) DO UPDATE SET head = excluded.head",
                (key, row_hash),
            )
        conn.execute(_INSERT_EVENT, (*_row(event), row_hash))

    # --- schema ------------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        applied: list[str] = []
        with self._write() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS dar_migrations (name TEXT PRIMARY KEY, applied_at REAL)"
            )
            done = {r[0] for r in conn.execute("SELECT name FROM dar_migrations")}
            for name, sql in migration_files(self.dialect):
                if name in done:
                    continue
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute("INSERT INTO dar_migrations VALUES (?, ?)", (name, time.time()))
                applied.append(name)
        return applied

    # --- claims ------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write buffered hit rows now (durably, with the connection's ``synchronous``)."""
        with self._lock:
            if self._pending and not self._closed.is_set():
                with self._write():
                    pass  # _write inserts the pending rows

    def get_claim(self, op: GetClaim) -> Claim | None:
        return self._claim(op.key)

    def _claim(self, key: str) -> Claim | None:
        with self._lock:
            try:  # (not `_errors`: this is the hot path of every cache hit)
                row = self._conn.execute(_SELECT_CLAIM, (key,)).fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite database {self.path}: {exc}") from exc
        return None if row is None else Claim(*row)

    def lookup(self, op: Lookup) -> tuple[Claim | None, bool]:
        with self._lock:
            claim = self._claim(op.key)
            if not is_hit(claim, op.input_hash, op.now):
                return claim, False
            if self.hit_flush > 0:
                self._pending.append(op.hit)
                self._flusher.start()
            else:
                with self._write() as conn:
                    self._insert(conn, op.hit)
            return claim, True

    def take_or_lookup(self, op: TakeOrLookup) -> tuple[bool, Claim | None]:
        # Embedded: two steps cost no round trip, and a hit never takes the write lock.
        t = op.take
        claim, _ = self.lookup(Lookup(t.key, t.input_hash, t.now, op.hit))
        if claim is not None:
            return False, claim
        return self.take(t), None

    def take(self, op: Take) -> bool:
        with self._write() as conn:
            if op.expect_version is None:
                cur = conn.execute(
                    "INSERT INTO agent_tool_claims (idempotency_key, tool_name, input_hash, state,"
                    " owner, lease_until, version, attempts, created_at, call_event_id)"
                    " VALUES (?, ?, ?, 'running', ?, ?, 1, 1, ?, ?)"
                    " ON CONFLICT (idempotency_key) DO NOTHING",
                    (
                        op.key,
                        op.tool_name,
                        op.input_hash,
                        op.owner,
                        op.lease_until,
                        op.now,
                        op.started.event_id,
                    ),
                )
            else:
                cur = conn.execute(
                    "UPDATE agent_tool_claims SET tool_name = ?, input_hash = ?, state = 'running',"
                    " owner = ?, lease_until = ?, version = version + 1, attempts = attempts + 1,"
                    " output = NULL, error = NULL, completed_at = NULL, expires_at = NULL,"
                    " call_event_id = ? WHERE idempotency_key = ? AND version = ?",
                    (
                        op.tool_name,
                        op.input_hash,
                        op.owner,
                        op.lease_until,
                        op.started.event_id,
                        op.key,
                        op.expect_version,
                    ),
                )
            if cur.rowcount != 1:
                return False
            self._insert(conn, op.started)
            return True

    def finish(self, op: Finish) -> bool:
        try:
            with self._write() as conn:
                return self._finish(conn, op)
        except StoreError:
            with self._lock:
                self._unwritten.append(op)  # the effect happened: keep trying to record it
            raise

    def _finish(self, conn: sqlite3.Connection, op: Finish) -> bool:
        cur = conn.execute(
            "UPDATE agent_tool_claims SET state = ?, output = ?, error = ?, completed_at = ?,"
            " expires_at = ?, lease_until = NULL, version = version + 1"
            " WHERE idempotency_key = ? AND owner = ? AND state = 'running'",
            (
                op.state.value,
                op.output,
                op.error,
                op.now,
                op.expires_at,
                op.key,
                op.owner,
            ),
        )
        self._insert(conn, op.event)
        return cur.rowcount == 1

    def mark(self, op: Mark) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE agent_tool_claims SET state = ?, version = version + 1"
                " WHERE idempotency_key = ? AND version = ?",
                (op.state.value, op.key, op.expect_version),
            )
            if cur.rowcount != 1:
                return False
            self._insert(conn, op.event)
            return True

    def resolve(self, op: Resolve) -> Claim:
        with self._write() as conn:
            row = conn.execute(_SELECT_CLAIM, (op.key,)).fetchone()
            if row is None:
                raise KeyError(op.key)
            check_resolvable(Claim(*row), op)
            if op.executed:
                conn.execute(
                    "UPDATE agent_tool_claims SET state = 'done', output = ?, completed_at = ?,"
                    " lease_until = NULL, version = version + 1 WHERE idempotency_key = ?",
                    (op.output, op.now, op.key),
                )
            else:
                conn.execute(
                    "UPDATE agent_tool_claims SET state = 'released', lease_until = NULL,"
                    " version = version + 1 WHERE idempotency_key = ?",
                    (op.key,),
                )
            self._insert(conn, op.event)
            row = conn.execute(_SELECT_CLAIM, (op.key,)).fetchone()
        return Claim(*row)

    # --- guards ------------------------------------------------------------------------------

    def reserve_guards(self, op: ReserveGuards) -> GuardDecision:
        answer: GuardDecision = self._shared(guard_rows.reserve(GUARDS, op))
        return answer

    def check_guards(self, op: CheckGuards) -> GuardDecision:
        answer: GuardDecision = self._shared(guard_rows.reserve(GUARDS, op))
        return answer

    def settle_guards(self, op: SettleGuards) -> None:
        self._shared(guard_rows.settle(GUARDS, op))

    def on_change(self, key: str, wake: Callable[[], None]) -> Callable[[], None] | None:
        """Another process may finish ``key`` at any time; SQLite can only be polled."""
        return None

    # --- the log -----------------------------------------------------------------------------

    def append(self, op: Append) -> None:
        with self._write() as conn:
            self._insert(conn, op.event)

    def events(self, filter: LogFilter) -> list[Event]:
        since = None if filter.since is None else filter.since.timestamp()
        sql, params = events_query("?", replace(filter, since=None), since=since)
        self.flush()  # the log as read here includes this store's buffered hits
        with self._lock, _errors(self.path):
            rows = list(self.db.query(sql, params))
        return [Event.from_row(r, json_as_text=True) for r in rows]

    # --- postmortem and retention ------------------------------------------------------------

    def sessions(self, filter: SessionFilter) -> list[SessionRow]:
        sql, params = sessions_query("?", filter)
        self.flush()
        with self._lock, _errors(self.path):
            return session_rows(self._conn.execute(sql, params).fetchall())

    def redaction_salt(self) -> str:
        if self._salt is None:
            with self._lock:
                row = self._conn.execute(
                    "SELECT value FROM dar_meta WHERE name = 'redaction_salt'"
                ).fetchone()
            self._salt = str(row[0])
        return self._salt

    # --- approvals ---------------------------------------------------------------------------

    def _shared(self, queries: steps.Steps) -> Any:
        """Run steps written for both dialects in one write transaction (waiters poll:
        nothing to wake)."""
        with self._write() as conn:
            try:
                step = next(queries)
                while True:
                    answer: Any = None
                    if isinstance(step, steps.Sql):
                        cur = conn.execute(step.sql, step.params)
                        answer = cur.fetchall() if step.rows == "all" else cur.fetchone()
                    elif isinstance(step, steps.AppendRow):
                        self._insert(conn, step.event)
                    step = queries.send(answer)
            except StopIteration as stop:
                return stop.value

    def request_approval(self, op: RequestApproval) -> str:
        answer: str = self._shared(approvals.request(APPROVALS, op))
        return answer

    def use_grant(self, op: UseGrant) -> GrantAnswer:
        answer: GrantAnswer = self._shared(approvals.use_grant(APPROVALS, op))
        return answer

    def get_approval(self, op: GetApproval) -> Approval | None:
        answer: Approval | None = self._shared(approvals.get(APPROVALS, op))
        return answer

    def decide_approval(self, op: DecideApproval) -> Approval | None:
        answer: Approval | None = self._shared(approvals.decide(APPROVALS, op))
        return answer

    def approvals(self, op: ListApprovals) -> list[Approval]:
        answer: list[Approval] = self._shared(approvals.listing(APPROVALS, op))
        return answer

    def save_saga(self, op: SaveSaga) -> bool:
        answer: bool = self._shared(sagas.save(SAGAS, op))
        return answer

    def get_saga(self, op: GetSaga) -> SagaRecord | None:
        answer: SagaRecord | None = self._shared(sagas.get(SAGAS, op))
        return answer

    def sagas(self, op: ListSagas) -> list[SagaRecord]:
        answer: list[SagaRecord] = self._shared(sagas.listing(SAGAS, op))
        return answer

    def save_run(self, op: SaveRun) -> bool:
        answer: bool = self._shared(run_rows.save(RUNS, op))
        return answer

    def get_run(self, op: GetRun) -> RunRecord | None:
        answer: RunRecord | None = self._shared(run_rows.get(RUNS, op))
        return answer

    def runs(self, op: ListRuns) -> list[RunRecord]:
        answer: list[RunRecord] = self._shared(run_rows.listing(RUNS, op))
        return answer

    def chain_heads(self, only: str | None = None) -> dict[str, str]:
        sql = "SELECT correlation_id, head FROM agent_tool_chain_heads"
        with self._lock:
            if only is None:
                rows = self._conn.execute(sql)
            else:
                rows = self._conn.execute(sql + " WHERE correlation_id = ?", (only,))
            return {str(k): str(v) for k, v in rows}

    def checkpoints(self) -> dict[str, str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT checkpoints FROM agent_tool_purges ORDER BY purge_id"
            ).fetchall()
        merged: dict[str, str] = {}
        for (text,) in rows:
            merged.update({k: v["row_hash"] for k, v in json.loads(text).items()})
        return merged

    def gc(self, now: float) -> int:
        with self._write() as conn:
            cur = conn.execute(
                "DELETE FROM agent_tool_claims WHERE state = 'released'"
                " OR (state IN ('done', 'failed') AND expires_at IS NOT NULL AND expires_at <= ?)",
                (now,),
            )
            return cur.rowcount

    def purge(self, before: dt.datetime, now: float, event: NewEvent) -> tuple[int, dict[str, Any]]:
        cutoff = before.timestamp()
        with self._write() as conn:
            chain = CHAIN_KEY_SQL.format(call_id="call_id", event_id="event_id")
            checkpoints = {
                key: {"seq": seq, "row_hash": h}
                for key, seq, h in conn.execute(
                    f"SELECT {chain}, seq, row_hash FROM agent_tool_events WHERE seq IN"
                    f" (SELECT max(seq) FROM agent_tool_events WHERE created_at < ?"
                    f"  GROUP BY {chain})",
                    (cutoff,),
                )
            }
            # The administrative path: the append-only triggers are lifted for this one
            # transaction only, and the purge itself is recorded and logged.
            conn.execute("DROP TRIGGER agent_tool_events_no_delete")
            cur = conn.execute("DELETE FROM agent_tool_events WHERE created_at < ?", (cutoff,))
            rows = cur.rowcount
            conn.execute(_no_delete_trigger())
            conn.execute(
                "INSERT INTO agent_tool_purges (purged_at, before, rows, checkpoints)"
                " VALUES (?, ?, ?, ?)",
                (now, cutoff, rows, json.dumps(checkpoints)),
            )
            # The purge's own row names its checkpoints: verify ties each record to it.
            self._insert(conn, replace(event, output=canonical_json(checkpoints).decode()))
        return rows, checkpoints

    def purge_records(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT checkpoints FROM agent_tool_purges ORDER BY purge_id"
            ).fetchall()
        return [json.loads(text) for (text,) in rows]

    def claims(self) -> list[Claim]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {', '.join(CLAIM_COLUMNS)} FROM agent_tool_claims"
            ).fetchall()
        return [Claim(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            _OPEN.discard(self)
            self.flush()
            self._closed.set()
            self._flusher.stop()
            self._conn.close()


@contextmanager
def _errors(path: str) -> Iterator[None]:
    """Every SQLite failure (disk full, read-only, corrupt file) as a ``StoreError`` that
    names the file."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"SQLite database {path}: {exc}") from exc


#: Open stores: flushed at interpreter exit, reconnected in a forked child.
_OPEN: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()


def _flush_all() -> None:
    for store in list(_OPEN):
        with contextlib.suppress(Exception):  # exiting: a failed flush must not mask why
            store.flush()


def _reconnect_all_in_child() -> None:
    """A forked child gets connections of its own. The inherited one is closed first: while
    it lives, SQLite's per-process lock bookkeeping would make the new connection skip the
    file locks that tell the parent this process still uses the WAL; and it cannot end the
    parent's WAL, because the parent's own connection still holds the file."""
    for store in list(_OPEN):
        if not store._closed.is_set():
            with contextlib.suppress(sqlite3.Error):
                store._conn.close()
            store._connect()


atexit.register(_flush_all)
os.register_at_fork(after_in_child=_reconnect_all_in_child)


def _no_delete_trigger() -> str:
    """The append-only trigger that `purge` lifts, as its migration creates it."""
    for _name, script in migration_files("sqlite"):
        for statement in _statements(script):
            if statement.startswith("CREATE TRIGGER agent_tool_events_no_delete"):
                return statement
    raise RuntimeError("no agent_tool_events_no_delete trigger in the SQLite migrations")


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements (trigger bodies contain semicolons)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            buffer = ""
            if statement and not all(
                ln.strip().startswith("--") or not ln.strip() for ln in statement.splitlines()
            ):
                yield statement
    if buffer.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()
    ):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer[:80]!r}")
