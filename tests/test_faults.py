"""Faults: a SQLite file locked past the busy timeout, a Postgres connection cut mid-call.

The outcome is an error or a retry: never a second execution, never a lost record.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dar import Effect, Runtime, Status, StoreError, tool
from dar.store.sqlite import SQLiteStore

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


def test_what_a_crash_can_lose_is_only_buffered_hit_rows(tmp_path: Path, marks: Path) -> None:
    """Cache-hit rows are buffered (see SQLiteStore's hit_flush); claims, outcomes and
    refusals are durable before execute returns. Kill a process right after 20 hits: the
    hits' rows are gone, the execution and its outcome are not."""
    import multiprocessing as mp
    import os
    import signal

    from tests.support import workers

    url = f"sqlite:///{tmp_path / 'crash.db'}"
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=workers.hits_then_die, args=(url, ready))
    proc.start()
    assert ready.wait(60)
    os.kill(proc.pid, signal.SIGKILL)
    STATS["faults: SIGKILL after buffered hits"] += 1
    proc.join()
    with Runtime(url) as rt:
        statuses = Counter(e.status for e in rt.events())
        assert statuses == {"started": 1, "executed": 1}  # the 20 "cached" rows were lost
        res = rt.execute(workers.slow_effect, {"n": 7, "marks": "hits", "sleep": 0})
        assert res.status == Status.CACHED  # the recorded outcome survived
    assert (marks / "hits").read_text().count("\n") == 1  # and it ran once


def test_hit_rows_become_durable_with_the_next_write(tmp_path: Path, runtime_kind: str) -> None:
    path = tmp_path / "flush.db"

    @tool(effect=Effect.MUTATE_LOCAL)
    def note(n: int) -> int:
        return n

    store = SQLiteStore(path, hit_flush=60.0)
    rt = make_kind(runtime_kind, store)
    rt.execute(note, {"n": 1})
    rt.execute(note, {"n": 1})  # a hit: buffered
    other = sqlite3.connect(path)
    count = "SELECT status FROM agent_tool_events ORDER BY seq"
    assert [r[0] for r in other.execute(count)] == ["started", "executed"]
    rt.execute(note, {"n": 2})  # the next write carries the hit row along, in order
    assert [r[0] for r in other.execute(count)] == [
        "started",
        "executed",
        "cached",
        "started",
        "executed",
    ]
    rt.execute(note, {"n": 2})
    rt.close()  # close flushes
    assert [r[0] for r in other.execute(count)][-1] == "cached"
    durable = SQLiteStore(tmp_path / "durable.db", hit_flush=0)
    rt = make_kind(runtime_kind, durable)
    rt.execute(note, {"n": 1})
    rt.execute(note, {"n": 1})
    assert [r[0] for r in sqlite3.connect(tmp_path / "durable.db").execute(count)] == [
        "started",
        "executed",
        "cached",
    ]  # hit_flush=0: written before returning
