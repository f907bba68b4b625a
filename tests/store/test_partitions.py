"""The Postgres log partitioned by month: rows land in their month (or DEFAULT, never
failing), purge drops whole months and the chains still verify, a populated log converts,
and the views read across months."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import psycopg
import pytest

from dar import Effect, Runtime, tool
from dar.cli.main import main
from dar.core.rows import admin_row
from dar.core.states import EventKind
from dar.store import postgres_sql
from dar.store.postgres import PostgresStore
from dar.store.sql import SessionFilter
from dar.views.sessions import list_sessions, load_session
from tests.conftest import Clock, fresh_schema
from tests.support.pg import migrate_before
from tests.support.sessions import check, covered, record_session, send_message

JAN_31_LAST_SECOND = dt.datetime(2027, 1, 31, 23, 59, 59, tzinfo=dt.timezone.utc).timestamp()


@tool(effect=Effect.MUTATE_EXTERNAL)
def note(n: int) -> int:
    return n


def utc(year: int, month: int, day: int) -> dt.datetime:
    return dt.datetime(year, month, day, tzinfo=dt.timezone.utc)


def partition_of(rt: Runtime) -> dict[int, str]:
    """Which partition holds each row, by seq."""
    store: Any = rt.store
    with store.pool.connection() as conn:
        rows = conn.execute(
            f'SELECT seq, tableoid::regclass::text FROM "{store.st.schema}".agent_tool_events'
        ).fetchall()
    return {seq: name.rsplit(".", 1)[-1] for seq, name in rows}


def partitions(url: str, schema: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = %s::regclass",
            (f'"{schema}".agent_tool_events',),
        ).fetchall()
    return {name for (name,) in rows}


def test_rows_land_in_their_month_across_a_boundary(pg_url: str) -> None:
    clock = Clock(JAN_31_LAST_SECOND)
    with Runtime(pg_url, clock=clock, rules=[covered]) as rt:
        store: Any = rt.store
        store.add_partitions(clock.now)
        january = rt.execute(note, {"n": 1}, correlation_id="s")
        clock.advance(2)
        february = rt.execute(note, {"n": 2}, correlation_id="s")
        where = partition_of(rt)
        months = {e.idempotency_key: where[e.seq] for e in rt.events()}
        assert months[january.key] == "agent_tool_events_y2027m01"
        assert months[february.key] == "agent_tool_events_y2027m02"
        assert check(rt).ok


def test_a_row_no_month_holds_lands_in_default(pg_url: str) -> None:
    clock = Clock(utc(2001, 9, 9).timestamp())
    with Runtime(pg_url, clock=clock, rules=[covered]) as rt:
        rt.execute(note, {"n": 1})
        clock.now = utc(2096, 1, 1).timestamp()
        rt.execute(note, {"n": 2})
        assert set(partition_of(rt).values()) == {"agent_tool_events_default"}
        # Its month would have to take the rows DEFAULT holds: it is left to DEFAULT.
        store: Any = rt.store
        made = store.add_partitions(utc(2001, 9, 9).timestamp())
        assert made == ["agent_tool_events_y2001m10"]
        assert len(rt.events()) == 4 and check(rt).ok


def test_purge_drops_whole_months_and_verify_passes(pg_url: str, pg_base_url: str) -> None:
    clock = Clock(utc(2027, 1, 10).timestamp())
    with Runtime(pg_url, clock=clock, rules=[covered]) as rt:
        store: Any = rt.store
        record_session(rt, "old")
        clock.now = utc(2027, 2, 10).timestamp()
        store.add_partitions(clock.now)
        rt.execute(send_message, {"order": "F", "text": "feb"}, correlation_id="old")
        clock.now = utc(2027, 3, 10).timestamp()
        record_session(rt, "new")
        rt.execute(send_message, {"order": "M", "text": "mar"}, correlation_id="old")
        before = len(rt.events())
        schema = store.st.schema
        assert "agent_tool_events_y2027m01" in partitions(pg_base_url, schema)

        cutoff = utc(2027, 2, 15)
        rows, points = store.purge(cutoff, clock.now, admin_row(EventKind.PURGED, "t", clock.now))

        left = partitions(pg_base_url, schema)
        assert "agent_tool_events_y2027m01" not in left  # dropped whole
        assert "agent_tool_events_y2027m02" in left  # its rows before the cutoff deleted
        remaining = rt.events()
        assert rows > 0 and len(remaining) == before - rows + 1
        assert all(e.created_at >= cutoff for e in remaining if e.status != "purged")
        assert set(points) == {"old"}
        assert check(rt).ok
    assert main(["verify", "--db", pg_url]) == 0


def test_purge_while_writers_write(pg_url: str) -> None:
    clock = Clock(utc(2027, 1, 10).timestamp())
    with Runtime(pg_url, clock=clock, rules=[covered]) as rt:
        store: Any = rt.store
        for n in range(5):
            rt.execute(note, {"n": n}, correlation_id=f"w{n % 2}")
        clock.now = utc(2027, 2, 10).timestamp()
        store.add_partitions(clock.now)
        stop = threading.Event()
        written: list[Any] = []

        def write(session: str) -> None:
            n = 100
            while not stop.is_set():
                n += 1
                written.append(rt.execute(note, {"n": n}, correlation_id=session).key)

        writers = [threading.Thread(target=write, args=(f"w{i}",)) for i in range(2)]
        for w in writers:
            w.start()
        while len(written) < 10:
            stop.wait(0.01)
        purged = admin_row(EventKind.PURGED, "t", clock.now)
        rows, points = store.purge(utc(2027, 2, 1), clock.now, purged)
        while len(written) < 20:
            stop.wait(0.01)
        stop.set()
        for w in writers:
            w.join()
        events = rt.events()
        assert rows == 10 and set(points) == {"w0", "w1"}
        assert {e.idempotency_key for e in events if e.status == "executed"} == set(written)
        assert check(rt).ok


def test_migration_converts_a_populated_log(pg_base_url: str) -> None:
    schema = fresh_schema()
    url = f"{pg_base_url}?schema={schema}"
    with psycopg.connect(pg_base_url, autocommit=True) as conn:
        migrate_before(conn, schema, "0008")
        conn.execute(f"CREATE ROLE app_{schema}")
        conn.execute(f"GRANT SELECT, INSERT ON agent_tool_events TO app_{schema}")
    clock = Clock(utc(2026, 10, 5).timestamp())
    with Runtime(
        PostgresStore(pg_base_url, schema=schema, migrate=False), clock=clock, rules=[covered]
    ) as rt:
        record_session(rt, "kept")
        clock.now = utc(2027, 1, 5).timestamp()
        rt.execute(send_message, {"order": "1", "text": "x"}, correlation_id="kept")
        old = rt.events()

    with Runtime(url, clock=clock, rules=[covered]) as rt:
        clock.now = utc(2027, 3, 5).timestamp()
        store: Any = rt.store
        store.add_partitions(clock.now)
        rt.execute(send_message, {"order": "2", "text": "x"}, correlation_id="kept")
        events = rt.events()
        where = partition_of(rt)
        assert events[: len(old)] == old and events[-1].seq > old[-1].seq
        assert {where[e.seq] for e in old} == {"agent_tool_events_before"}
        assert where[events[-1].seq] == "agent_tool_events_y2027m03"
        assert check(rt).ok
        purged = admin_row(EventKind.PURGED, "t", clock.now)
        rows, _ = store.purge(utc(2027, 2, 1), clock.now, purged)
        assert rows == len(old)
        assert "agent_tool_events_before" not in partitions(pg_base_url, schema)
        assert check(rt).ok
    with psycopg.connect(pg_base_url) as conn:
        grant = f'"{schema}".agent_tool_events'
        has = conn.execute("SELECT has_table_privilege(%s, %s, 'INSERT')", (f"app_{schema}", grant))
        assert has.fetchone() == (True,)


@pytest.mark.parametrize("newest_rows", [20_000, 3])
def test_sessions_and_trace_read_across_months(
    pg_url: str, newest_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The list looks at the newest rows first, then further back: both find the same.
    monkeypatch.setattr(postgres_sql, "NEWEST_ROWS", newest_rows)
    clock = Clock(JAN_31_LAST_SECOND - 60)
    with Runtime(pg_url, clock=clock, rules=[covered]) as rt:
        store: Any = rt.store
        store.add_partitions(clock.now)
        record_session(rt, "spans")
        rt.execute(note, {"n": 0}, correlation_id="january")
        clock.advance(120)
        record_session(rt, "february")
        rt.execute(note, {"n": 1}, correlation_id="spans")
        assert len(set(partition_of(rt).values())) == 2

        listed = {s.session_id: s for s in list_sessions(store)}
        assert list(listed) == ["spans", "february", "january"]
        assert [s.session_id for s in list_sessions(store, SessionFilter(limit=2))] == [
            "spans",
            "february",
        ]
        found = list_sessions(store, SessionFilter(text="JAN"))
        assert [(s.session_id, s.events) for s in found] == [("january", 2)]
        assert [s.session_id for s in list_sessions(store, SessionFilter(tool="note"))] == [
            "spans",
            "january",
        ]
        spans = load_session(store, "spans")
        assert spans.events == listed["spans"].events == len(rt.events(correlation_id="spans"))
        assert spans.chain_ok and spans.first_at is not None and spans.first_at < "2027-02"
        assert spans.last_at is not None and spans.last_at >= "2027-02"


@pytest.mark.parametrize("kind", ["update", "truncate"])
def test_a_month_refuses_changes_like_the_log(pg_url: str, kind: str) -> None:
    with Runtime(pg_url) as rt:
        rt.execute(note, {"n": 1})
        store: Any = rt.store
        month = next(iter(partition_of(rt).values()))
        sql = {"update": "UPDATE {} SET status = 'x'", "truncate": "TRUNCATE {}"}[kind]
        with (
            store.pool.connection() as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
        ):
            conn.execute(sql.format(f'"{store.st.schema}".{month}'))
