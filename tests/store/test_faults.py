"""Faults: a SQLite file locked past the busy timeout, corrupt, read-only or full; a Postgres
connection cut mid-call or a server gone past the retry budget.

The outcome is an error or a retry: never a second execution, never a lost record.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dar import Effect, Runtime, Status, StoreError, tool
from dar.store.postgres import PostgresStore
from dar.store.sqlite import SQLiteStore
from tests.conftest import fresh_schema
from tests.support.coverage import STATS
from tests.support.runtimes import make as make_kind


def hold_write_lock(path: Path, seconds: float, ready: threading.Event) -> None:
    """Another connection (as another process would) holds the write lock."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    ready.set()
    time.sleep(seconds)
    conn.execute("ROLLBACK")
    conn.close()


@contextmanager
def write_lock_held(db: Path, seconds: float) -> Iterator[None]:
    """Another connection holds the write lock for ``seconds`` from entry."""
    ready = threading.Event()
    locker = threading.Thread(target=hold_write_lock, args=(db, seconds, ready))
    locker.start()
    ready.wait()
    try:
        yield
    finally:
        locker.join()


runs: list[str] = []


@tool(effect=Effect.MUTATE_EXTERNAL)
def ship(order: str) -> str:
    runs.append(order)
    return "shipped"


def test_sqlite_lock_longer_than_busy_timeout_is_waited_out(
    tmp_path: Path, runtime_kind: str
) -> None:
    db = tmp_path / "locked.db"
    runs.clear()
    rt = make_kind(runtime_kind, SQLiteStore(db, busy_timeout=0.05, retry_for=10))
    with write_lock_held(db, 0.5):
        STATS["faults: SQLite locked past the busy timeout"] += 1
        res = rt.execute(ship, {"order": "A"})  # the claim waits for the lock, then goes on
    assert res.status == Status.EXECUTED and runs == ["A"]
    assert [e.status for e in rt.events()] == ["started", "executed"]


def test_sqlite_lock_that_outlasts_the_retries_fails_cleanly(
    tmp_path: Path, runtime_kind: str
) -> None:
    db = tmp_path / "locked.db"
    runs.clear()
    rt = make_kind(runtime_kind, SQLiteStore(db, busy_timeout=0.05, retry_for=0.3))
    STATS["faults: SQLite locked past the busy timeout"] += 1
    with write_lock_held(db, 1.5), pytest.raises(StoreError, match="stayed locked"):
        rt.execute(ship, {"order": "A"})
    assert runs == [] and rt.events() == []  # nothing ran, nothing half-written
    assert rt.execute(ship, {"order": "A"}).status == Status.EXECUTED  # the retry works
    assert runs == ["A"]


class CuttingProxy:
    """A TCP proxy on loopback whose open connections can be cut at will."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
            self.cuts += 1
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        self.cut()


def test_postgres_connection_cut_mid_call(pg_base_url: str, runtime_kind: str) -> None:
    from urllib.parse import urlsplit

    from tests.conftest import fresh_schema

    parts = urlsplit(pg_base_url)
    proxy = CuttingProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    via_proxy = pg_base_url.replace(f":{parts.port}", f":{proxy.port}", 1)
    runs: Counter[int] = Counter()

    @tool(effect=Effect.IRREVERSIBLE, key=lambda i: f"pay:{i['n']}")
    def pay(n: int) -> dict[str, Any]:
        runs[n] += 1
        proxy.cut()  # every connection dies while the effect happens
        STATS["faults: Postgres connections cut mid-call"] += 1
        return {"paid": n}

    from dar import rule

    allow = rule(applies_to="*", name="allow")(lambda i, c: True)
    rt = make_kind(runtime_kind, f"{via_proxy}?schema={fresh_schema()}", rules=[allow])
    try:
        results = [rt.execute(pay, {"n": n}) for n in range(5)]
        assert [r.status for r in results] == [Status.EXECUTED] * 5
        assert runs == {n: 1 for n in range(5)}
        # The outcome written after the cut is there, once, and answers retries.
        statuses = Counter(e.status for e in rt.events())
        assert statuses == {"started": 5, "executed": 5}
        assert all(rt.execute(pay, {"n": n}).status == Status.CACHED for n in range(5))
        assert proxy.cuts == 5
    finally:
        rt.close()
        proxy.close()


@tool(effect=Effect.MUTATE_LOCAL)
def note(n: int) -> int:
    return n


def test_a_corrupt_file_is_a_store_error(tmp_path: Path) -> None:
    """Found by the airtight review: SQLite disk full, a read-only file, a corrupt file: raw
    `sqlite3.OperationalError`/`DatabaseError` instead of `StoreError`."""
    db = tmp_path / "corrupt.db"
    db.write_bytes(b"this is not a database, it is a shopping list\n" * 200)
    with pytest.raises(StoreError):
        Runtime(f"sqlite:///{db}")


def test_a_read_only_file_is_a_store_error() -> None:
    """Found by the airtight review: a read-only file gave a raw `sqlite3.OperationalError` instead
    of a `StoreError`. (Root ignores file modes, so the check runs in a forked child that becomes
    `nobody`.)"""
    folder = Path(tempfile.mkdtemp(prefix="dar-ro-"))
    try:
        os.chmod(folder, 0o755)
        db = folder / "ro.db"
        with Runtime(f"sqlite:///{db}") as rt:
            rt.execute(note, {"n": 1})
        os.chmod(db, 0o444)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(read)
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                ro = Runtime(f"sqlite:///{db}")
                ro.execute(note, {"n": 2})
                message = "no error"
            except BaseException as exc:
                message = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
            os.write(write, message.encode()[:4000])
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        message = os.read(read, 4096).decode()
        os.close(read)
        assert message.startswith("dar.errors.StoreError"), message
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def test_disk_full_is_a_store_error(tmp_path: Path) -> None:
    """Found by the airtight review: disk full gave a raw `sqlite3.OperationalError` instead of a
    `StoreError`."""
    rt = Runtime(SQLiteStore(tmp_path / "full.db", retry_for=1.0))
    conn: sqlite3.Connection = rt.store._conn  # type: ignore[attr-defined]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreError):
        rt.execute(note, {"n": "x" * 200_000})


def test_disk_full_during_the_handler_never_runs_it_twice(tmp_path: Path) -> None:
    """Found by the airtight review: after a disk-full during the handler a `mutate-local` effect
    ran twice."""
    now = [1_800_000_000.0]
    ran: list[int] = []
    rt = Runtime(SQLiteStore(tmp_path / "full.db", retry_for=1.0), clock=lambda: now[0], wait=0)
    conn: sqlite3.Connection = rt.store._conn  # type: ignore[attr-defined]

    @tool(effect=Effect.MUTATE_LOCAL, lease=60)
    def export(n: int) -> str:
        ran.append(n)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk fills up now
        return "x" * 200_000

    try:
        first = rt.execute(export, {"n": 1})
        assert first.status == Status.EXECUTED
    except StoreError:
        pass  # failing the call is allowed; running the effect again is not
    conn.execute("PRAGMA max_page_count = 1073741823")  # space is freed
    now[0] += 3600  # long past the lease
    again = rt.execute(export, {"n": 1})
    assert ran == [1], f"the effect ran {len(ran)} times ({again.status})"
    rt.close()


@tool(name="charge", effect=Effect.MUTATE_LOCAL, key=lambda i: f"charge:{i['order']}")
def charge_once(order: str) -> dict[str, str]:
    return {"charged": order}


def test_the_postgres_retry_budget_is_configurable() -> None:
    """Found by the airtight review: the retry window: README says 15 s, a connection-slot
    exhaustion gave up after 30 s. One documented, configurable budget."""
    from tests.support.pg import start_server

    server = start_server()
    rt = None
    try:
        if not hasattr(server, "stop"):
            pytest.fail("this test needs local Postgres binaries to stop the server")
        store = PostgresStore(server.url, schema=fresh_schema(), retry_for=2.0)
        rt = Runtime(store)
        assert rt.execute(charge_once, {"order": "A"}).status == Status.EXECUTED
        server.stop("immediate")
        started = time.monotonic()
        with pytest.raises(StoreError):
            rt.execute(charge_once, {"order": "B"})
        elapsed = time.monotonic() - started
        assert 1.5 <= elapsed <= 8.0, f"gave up after {elapsed:.1f}s, not about 2 s"
    finally:
        if rt is not None:
            with contextlib.suppress(Exception):
                rt.close()
        server.close()
