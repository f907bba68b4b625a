"""A log that grows for years: the partitioned Postgres log against a plain table of the
same 5,000,000 events, side by side in one run.

Both schemas hold the same rows (a year of them, 50 per session, inserted with
generate_series; the plain one is the schema before migration 0008) and one real session of
the runtime's own chained rows. Timed on each: the sessions list (`dar ui`'s first page),
that session's trace (`dar ui`/`dar trace`), `dar stats --since` over its last day, a fresh
call, and the retention of the oldest month: `dar purge` dropping its partition against the
same purge deleting its rows. Prints the figures; not a test.

    PYTHONPATH=python:. python benches/bench_log_size.py [--rows 5000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import time
from collections.abc import Callable
from contextlib import closing
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

from bench_views import timed  # the best of three, in ms: as the views' benchmark times
from dar import Effect, Runtime, tool
from dar.audit.postmortem import stats
from dar.core.ops import LogFilter
from dar.core.rows import admin_row
from dar.core.states import EventKind
from dar.store.postgres import PostgresStore
from dar.store.sql import SessionFilter, sessions_query
from dar.views.sessions import list_sessions, load_session

YEAR = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
SPAN = 365 * 86400  # seconds the generated rows spread over
PER_SESSION = 50
FEBRUARY = YEAR + dt.timedelta(days=31)
TRACED_AT = (YEAR + dt.timedelta(seconds=SPAN - 43200)).timestamp()  # its last day
COLUMNS = (
    "seq, event_id, call_id, idempotency_key, tool_name, effect, input, input_hash, output,"
    " status, correlation_id, attempt, duration_ms, created_at, completed_at, row_hash"
)


@tool(effect=Effect.MUTATE_EXTERNAL)
def send(n: int) -> dict[str, int]:
    return {"sent": n}


def plain_schema(url: str, schema: str, like: str) -> None:
    """The schema as it was before the log was partitioned (with ``like``'s append-only
    trigger function, so a DELETE costs the same per row in both)."""
    from tests.support.pg import migrate_before

    with psycopg.connect(url, autocommit=True) as conn:
        migrate_before(conn, schema, "0008")
        # What the store calls to partition ahead: nothing to do on a plain table.
        conn.execute(
            "CREATE FUNCTION agent_tool_events_add_partitions(at TIMESTAMPTZ, ahead INTEGER)"
            " RETURNS SETOF TEXT LANGUAGE sql AS 'SELECT NULL::text WHERE false'"
        )
        fn = f'"{like}".agent_tool_events_refuse_change'
        (ddl,) = conn.execute("SELECT pg_get_functiondef(%s::regproc)", (fn,)).fetchone() or ("",)
        conn.execute(ddl.replace(f"{like}.", f"{schema}."))


def generate(url: str, part: str, plain: str, rows: int) -> None:
    """``rows`` events in the partitioned log, then the same rows in the plain one."""
    sessions = rows // PER_SESSION
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{part}".agent_tool_events ({COLUMNS}) OVERRIDING SYSTEM VALUE'
            " SELECT i + 1, gen_random_uuid(), gen_random_uuid(), 'send:' || i / 2, 'send',"
            " 'mutate_external', jsonb_build_object('n', i / 2), md5((i / 2)::text),"
            " CASE WHEN i %% 2 = 1 THEN jsonb_build_object('sent', i / 2) END,"
            " CASE WHEN i %% 2 = 0 THEN 'started' ELSE 'executed' END,"
            f" 's' || i / {PER_SESSION}, 1, CASE WHEN i %% 2 = 1 THEN 1.5 END,"
            " %(start)s + i * %(step)s * interval '1 second',"
            " CASE WHEN i %% 2 = 1 THEN %(start)s + i * %(step)s * interval '1 second' END,"
            " md5(i::text) FROM generate_series(0, %(rows)s - 1) AS i",
            {"start": YEAR, "step": SPAN / rows, "rows": rows},
        )
        conn.execute(
            f'INSERT INTO "{plain}".agent_tool_events ({COLUMNS}) OVERRIDING SYSTEM VALUE'
            f' SELECT {COLUMNS} FROM "{part}".agent_tool_events ORDER BY seq'
        )
        for schema in (part, plain):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('\"{schema}\".agent_tool_events', 'seq'),"
                " %s)",
                (rows,),
            )
            conn.execute(
                f'INSERT INTO "{schema}".agent_tool_chain_heads'
                f" SELECT 's' || i, md5(i::text) FROM generate_series(0, {sessions - 1}) AS i"
            )
            conn.execute(f'VACUUM ANALYZE "{schema}".agent_tool_events')


def fresh_calls(
    url: str, schema: str, clock: Callable[[], float], first: int, n: int
) -> list[float]:
    """µs of each of ``n`` fresh calls."""
    took = []
    with Runtime(PostgresStore(url, schema=schema, migrate=False), clock=clock) as rt:
        for i in range(first, first + n):
            t0 = time.perf_counter()
            rt.execute(send, {"n": 10_000_000 + i})
            took.append((time.perf_counter() - t0) * 1e6)
    return took


def whole_log_list(url: str, schema: str) -> Callable[[], Any]:
    """The sessions list as one GROUP BY over the whole log (the query before 0008)."""
    sql, params = sessions_query("%s", SessionFilter(), schema_prefix=f'"{schema}".')

    def run() -> Any:
        with psycopg.connect(url) as conn:
            return conn.execute(sql, params).fetchall()

    return run


def reads(url: str, schema: str) -> dict[str, float]:
    """The views on the log, after one real session of 200 chained rows on its last day."""
    with Runtime(PostgresStore(url, schema=schema, migrate=False), clock=lambda: TRACED_AT) as rt:
        for n in range(100):
            rt.execute(send, {"n": -n - 1}, correlation_id="traced")
    out: dict[str, float] = {}
    with closing(PostgresStore(url, schema=schema, migrate=False)) as store:
        out["sessions list (200 newest)"], listed = timed(lambda: list_sessions(store))
        assert listed[0].session_id == "traced"
        out["the same, one GROUP BY over the log"], _ = timed(whole_log_list(url, schema))
        out["one session's trace (200 rows)"], view = timed(lambda: load_session(store, "traced"))
        assert view.chain_ok and view.events == 200
        since = dt.datetime.fromtimestamp(TRACED_AT - 86400, tz=dt.timezone.utc)
        out["dar stats --since (last day)"], _ = timed(
            lambda: stats(store.events(LogFilter(since=since)))
        )
    return out


def drop_or_delete(url: str, schema: str, partitioned: bool) -> float:
    """ms to remove the oldest month's rows in SQL alone (no checkpoints), rolled back:
    DETACH + DROP of its partition, or a DELETE of its rows."""
    log = f'"{schema}".agent_tool_events'
    with psycopg.connect(url) as conn:
        t0 = time.perf_counter()
        if partitioned:
            month = f'"{schema}".agent_tool_events_y2026m01'
            conn.execute(f"ALTER TABLE {log} DETACH PARTITION {month}")
            conn.execute(f"DROP TABLE {month}")
        else:
            conn.execute("SET LOCAL dar.purge = 'on'")
            conn.execute(f"DELETE FROM {log} WHERE created_at < %s", (FEBRUARY,))
        took = (time.perf_counter() - t0) * 1000
        conn.rollback()
    return took


def purge(url: str, schema: str) -> tuple[float, int]:
    """``dar purge --before`` the second month: ms and rows."""
    with closing(PostgresStore(url, schema=schema, migrate=False)) as store:
        event = admin_row(EventKind.PURGED, "bench", TRACED_AT)
        took, (rows, _) = timed(lambda: store.purge(FEBRUARY, TRACED_AT, event), repeat=1)
    return took, rows


def measure(url: str, plain: str, part: str, calls: int) -> dict[str, dict[str, float]]:
    out = {plain: reads(url, plain), part: reads(url, part)}
    took: dict[str, list[float]] = {plain: [], part: []}
    rounds = 5
    for r in range(rounds):  # alternate, so the machine's drift hits both alike
        for schema in (plain, part):
            took[schema] += fresh_calls(url, schema, lambda: TRACED_AT, r * calls, calls // rounds)
    for schema in (plain, part):
        out[schema]["fresh call (median, µs)"] = statistics.median(took[schema])
        out[schema]["remove the oldest month, SQL only"] = min(
            drop_or_delete(url, schema, schema == part) for _ in range(3)
        )
        out[schema]["dar purge of the oldest month"], rows = purge(url, schema)
        out[schema]["rows purged"] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    console = Console()
    url = os.environ.get("DAR_BENCH_POSTGRES_URL")
    server = None
    if not url:
        from tests.support.pg import start_server

        server = start_server()
        url = server.url
    try:
        part, plain = "bench_partitioned", "bench_plain"
        with psycopg.connect(url, autocommit=True) as conn:
            for schema in (part, plain):
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        store = PostgresStore(url, schema=part)
        store.add_partitions(YEAR.timestamp(), ahead=12)
        store.close()
        plain_schema(url, plain, part)
        t0 = time.perf_counter()
        generate(url, part, plain, args.rows)
        console.print(f"built {args.rows:,} events twice in {time.perf_counter() - t0:.0f} s")
        results = measure(url, plain, part, args.calls)
        table = Table(title=f"a log of {args.rows:,} events: plain table vs monthly partitions")
        for col in ("ms (best of 3)", "plain", "partitioned", "plain ÷ partitioned"):
            table.add_column(col, justify="right")
        for what, was in results[plain].items():
            now = results[part][what]
            ratio = "" if what == "rows purged" else f"{was / now:.2f}"
            table.add_row(what, f"{was:,.1f}", f"{now:,.1f}", ratio)
        console.print(table)
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
