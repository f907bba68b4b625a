"""What only Postgres has to prove: many workers, schemas and libpq URLs passed through,
round trips, in-doubt commits, LISTEN/NOTIFY, restarts, and what a missing extra says."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg_pool import ConnectionPool

import dar
from dar import AsyncRuntime, Effect, Result, Runtime, Status, StoreError, rule, tool
from dar.core.ids import new_id
from dar.core.ops import Append, Finish, LogFilter, Lookup, Take
from dar.core.states import ClaimState
from dar.records import NewEvent
from dar.store import open_store, split_schema
from dar.store.migrate import migration_files
from dar.store.postgres import PostgresStore
from tests.conftest import fresh_schema
from tests.support.coverage import STATS


@tool(effect=Effect.MUTATE_EXTERNAL)
def charge(order: str) -> dict[str, str]:
    return {"charged": order}


def event(status: str, key: str = "k") -> NewEvent:
    return NewEvent(
        event_id=new_id(),
        tool_name="t",
        effect="mutate-external",
        status=status,
        created_at=time.time(),
        idempotency_key=key,
        input_hash="h",
    )


def test_schema_option_and_an_application_pool(pg_base_url: str) -> None:
    schema = fresh_schema()
    with ConnectionPool(pg_base_url, kwargs={"autocommit": True}) as pool:
        store = PostgresStore(pool, schema=schema)
        rt = Runtime(store)
        assert rt.execute(charge, {"order": "A"}).status == Status.EXECUTED
        assert rt.execute(charge, {"order": "A"}).status == Status.CACHED
        rt.close()  # writes the buffered hit row; the application's pool stays open
        assert not pool.closed
        with pool.connection() as conn:
            n = conn.execute(f'SELECT count(*) FROM "{schema}".agent_tool_events').fetchone()
        assert n == (3,)


def test_url_schema_option() -> None:
    url, schema = split_schema("postgresql://u@h:5/db?sslmode=disable&schema=agents")
    assert (url, schema) == ("postgresql://u@h:5/db?sslmode=disable", "agents")
    assert split_schema("postgresql://h/db") == ("postgresql://h/db", None)
    with pytest.raises(dar.ConfigurationError):
        PostgresStore("postgresql://h/db", schema="Robert'); DROP TABLE x;--")


def test_concurrent_starters_migrate_once(pg_base_url: str) -> None:
    schema = fresh_schema()
    barrier = threading.Barrier(8)
    applied: list[list[str]] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait()
            store = PostgresStore(pg_base_url, schema=schema, migrate=False)
            applied.append(store.migrate())
            store.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    shipped = [name for name, _ in migration_files("postgres")]
    assert sorted(len(a) for a in applied) == [0] * 7 + [len(shipped)]
    with psycopg.connect(pg_base_url) as conn:
        rows = conn.execute(f'SELECT name FROM "{schema}".dar_migrations ORDER BY name').fetchall()
    assert [r[0] for r in rows] == shipped


class RoundTrips:
    """Counts round trips from libpq's own protocol trace: one `Sync` a round trip."""

    def __init__(self, folder: Any) -> None:
        self.path = folder / "trace.log"
        self.file = open(self.path, "w")  # noqa: SIM115 - held open by libpq

    def attach(self, conn: psycopg.Connection[Any]) -> None:
        conn.pgconn.trace(self.file.fileno())

    def count(self) -> int:
        self.file.flush()
        return sum(
            1
            for line in self.path.read_text().splitlines()
            if line.startswith("F\t") and line.split("\t")[2].startswith("Sync")
        )


def test_round_trips_per_call(pg_base_url: str, tmp_path: Any) -> None:
    trips = RoundTrips(tmp_path)
    with ConnectionPool(
        pg_base_url, min_size=1, max_size=1, kwargs={"autocommit": True}, configure=trips.attach
    ) as pool:
        from psycopg.pq import Trace

        judged = tool(name="judged", effect=Effect.MUTATE_EXTERNAL)(lambda n: n)
        allow = rule(applies_to="judged", name="allow")(lambda i, c: True)
        rt = Runtime(PostgresStore(pool, schema=fresh_schema(), hit_flush=60), rules=[allow])
        with pool.connection() as conn:
            conn.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)
        peek = tool(name="peek", effect=Effect.READ)(lambda q: q)
        counts = {}
        # Once per store, the database's salt is read; once per connection, each statement
        # of the hot path is prepared (one more round trip): warm both up first.
        rt.execute(charge, {"order": "warm"})
        rt.execute(judged, {"n": 0})
        rt.execute(peek, {"q": 0})
        rt.execute(charge, {"order": "warm"})
        rt.store.flush()  # the hit's row, so that no step below carries it
        steps: list[tuple[str, Callable[[], Result]]] = [
            ("fresh, no rule applies", lambda: rt.execute(charge, {"order": "RT"})),
            ("hit", lambda: rt.execute(charge, {"order": "RT"})),
            ("read, carrying the hit row", lambda: rt.execute(peek, {"q": 1})),
            ("fresh, judged by a rule", lambda: rt.execute(judged, {"n": 1})),
            ("hit, judged tool", lambda: rt.execute(judged, {"n": 1})),
        ]
        for label, call in steps:
            before = trips.count()
            res = call()
            counts[label] = (res.status, trips.count() - before)
        assert counts == {
            "fresh, no rule applies": (Status.EXECUTED, 2),  # claim-or-look-up, outcome
            "hit": (Status.CACHED, 1),
            # The carried rows in one pipelined transaction (one Sync), then the read's row.
            "read, carrying the hit row": (Status.EXECUTED, 2),
            "fresh, judged by a rule": (Status.EXECUTED, 3),  # look up, (rules), claim, outcome
            "hit, judged tool": (Status.CACHED, 1),
        }
        rt.close()
    trips.file.close()


def test_statements_deallocated_under_the_store_are_prepared_again(pg_base_url: str) -> None:
    """The hot path's statements are prepared once per connection; an application's own
    pool may `DEALLOCATE ALL` (or a pooler `DISCARD ALL`) behind the store's back."""
    with ConnectionPool(pg_base_url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        rt = Runtime(PostgresStore(pool, schema=fresh_schema(), hit_flush=0))
        assert rt.execute(charge, {"order": "A"}).status is Status.EXECUTED
        with pool.connection() as conn:
            names = [r[0] for r in conn.execute("SELECT name FROM pg_prepared_statements")]
            assert names and all(n.startswith("dar_") for n in names)
            conn.execute("DEALLOCATE ALL")
        assert rt.execute(charge, {"order": "A"}).status is Status.CACHED
        assert rt.execute(charge, {"order": "B"}).status is Status.EXECUTED
        statuses = [e.status for e in rt.events()]
        assert statuses == ["started", "executed", "cached", "started", "executed"]
        rt.close()


def test_text_with_nul_is_refused_before_the_hot_path_sends_it(pg_base_url: str) -> None:
    """libpq sends text parameters as C strings: a NUL would cut a value short silently."""
    store = PostgresStore(pg_base_url, schema=fresh_schema())
    with pytest.raises(StoreError, match="NUL"):
        store.append(Append(replace(event("failed"), error="cut\x00here")))
    store.close()


def test_in_doubt_commits_replay_safely(pg_url: str) -> None:
    """A statement whose commit reached the server but whose answer was lost is sent again
    by the retry loop. Replaying each write must change nothing the second time."""
    store = open_store(pg_url)
    started = event("started")
    take = Take("k", "t", "h", "worker-1", time.time() + 60, time.time(), None, started)
    assert store.take(take) is True
    assert store.take(take) is True  # recognised as our own claim: still ours, run once
    assert (
        store.take(
            Take("k", "t", "h", "worker-2", time.time() + 60, time.time(), None, event("started"))
        )
        is False
    )
    done = event("executed")
    finish = Finish("k", "worker-1", ClaimState.DONE, '"ok"', None, time.time(), None, done)
    assert store.finish(finish)
    store.finish(finish)
    hit = event("cached")
    for _ in range(2):
        claim, _ = store.lookup(Lookup("k", "h", time.time(), hit))
        assert claim is not None and claim.state == "done"
    statuses = Counter(e.status for e in store.events(LogFilter(key="k")))
    assert statuses == {"started": 1, "executed": 1, "cached": 1}
    store.close()


def test_waiters_are_woken_by_notify(pg_url: str) -> None:
    url, schema = split_schema(pg_url)
    waiter = PostgresStore(url, schema=schema or "public")
    worker = PostgresStore(url, schema=schema or "public", migrate=False)
    started = event("started", key="w")
    worker.take(Take("w", "t", "h", "worker", time.time() + 60, time.time(), None, started))
    changed = threading.Event()
    stop = waiter.on_change("w", changed.set)  # starts the listener
    assert stop is not None
    time.sleep(0.3)  # let it LISTEN

    def finish_soon() -> None:
        time.sleep(0.2)
        done = event("executed", "w")
        worker.finish(Finish("w", "worker", ClaimState.DONE, "1", None, time.time(), None, done))

    threading.Thread(target=finish_soon).start()
    started_at = time.monotonic()
    changed.wait(30.0)
    stop()
    assert time.monotonic() - started_at < 15.0, "woken by NOTIFY, not by the 30 s timeout"
    waiter.close()
    worker.close()


def test_async_store_with_an_application_pool(pg_base_url: str) -> None:
    async def main() -> list[Status]:
        with ConnectionPool(pg_base_url, kwargs={"autocommit": True}) as pool:
            rt = AsyncRuntime(PostgresStore(pool, schema=fresh_schema()))
            results = await asyncio.gather(*(rt.execute(charge, {"order": "Z"}) for _ in range(5)))
            await rt.close()
            return sorted(r.status for r in results)

    assert asyncio.run(main()) == [Status.CACHED] * 4 + [Status.EXECUTED]


def test_server_restart_mid_run(marks: Any) -> None:
    """Calls keep going through an immediate (crash-like) server restart: each either
    completes or fails with a clear StoreError; none runs twice, no outcome is lost."""
    from tests.support.pg import start_server

    server = start_server()
    if not hasattr(server, "restart"):
        pytest.fail("this test needs local Postgres binaries to restart the server")
    runs: Counter[int] = Counter()

    @tool(effect=Effect.MUTATE_EXTERNAL, key=lambda i: f"job:{i['n']}")
    def job(n: int) -> int:
        runs[n] += 1
        return n

    try:
        rt = Runtime(f"{server.url}?schema=restart", wait=5)
        results: dict[int, Any] = {}
        stop = threading.Event()

        def caller() -> None:
            n = 0
            while not stop.is_set() and n < 400:
                try:
                    results[n] = rt.execute(job, {"n": n}).status
                except StoreError as exc:
                    results[n] = exc
                n += 1

        t = threading.Thread(target=caller)
        t.start()
        time.sleep(0.3)
        server.restart("immediate")
        STATS["faults: Postgres server restarted mid-run"] += 1
        time.sleep(0.3)
        stop.set()
        t.join(timeout=120)
        assert not t.is_alive()
        assert max(runs.values()) == 1, "a handler ran twice"
        executed = [n for n, s in results.items() if s == Status.EXECUTED]
        assert executed and set(executed) <= set(runs)
        log = rt.events(status="executed")
        assert sorted(e.input["n"] for e in log if e.idempotency_key) == sorted(executed)
        # Everything recorded replays from the record after the restart.
        for n in executed[:20]:
            assert rt.execute(job, {"n": n}).status == Status.CACHED
        rt.close()
    finally:
        server.close()


def test_a_bad_url_fails_at_once_with_the_reason(pg_base_url: str) -> None:
    start = time.monotonic()
    with pytest.raises(StoreError, match="invalid URI query parameter"):
        PostgresStore(pg_base_url + "?nonsense=1")
    with pytest.raises(StoreError, match="cannot connect to Postgres"):
        PostgresStore("postgresql://nobody@127.0.0.1:1/none")
    assert time.monotonic() - start < 10  # not a pool timeout
    with pytest.raises(StoreError, match="cannot connect to Postgres"):
        AsyncRuntime("postgresql://nobody@127.0.0.1:1/none")


REPO = Path(__file__).resolve().parents[2]


@tool(name="charge", effect=Effect.MUTATE_LOCAL, key=lambda i: f"charge:{i['order']}")
def charge_once(order: str) -> dict[str, str]:
    return {"charged": order}


def tables_in(base: str, schema: str) -> set[str]:
    with psycopg.connect(base) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
        return {r[0] for r in rows}


@pytest.mark.parametrize(
    "options", ["-c%20statement_timeout%3D5000", "-c%20search_path%3Dfoo"], ids=["timeout", "path"]
)
def test_libpq_options_with_a_space_pass_through(pg_base_url: str, options: str) -> None:
    """Found by the airtight review: valid libpq URLs break after `dar` re-encodes them (...
    `options=-c ...` with a space); pass connection strings through untouched except for `dar`'s own
    parameters."""
    schema = fresh_schema()
    url = f"{pg_base_url}?application_name=dar%20libpq%20options&options={options}&schema={schema}"
    with Runtime(url) as rt:
        assert rt.execute(charge_once, {"order": "A"}).status == Status.EXECUTED
        with psycopg.connect(pg_base_url) as conn:
            names = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                ("dar libpq options",),
            ).fetchone()
        assert names is not None and names[0] >= 1, "application_name did not arrive intact"
    assert "agent_tool_events" in tables_in(pg_base_url, schema)  # ?schema= still honoured


def test_a_unix_socket_url_with_an_empty_host_works(pg_base_url: str) -> None:
    """Found by the airtight review: a unix socket URL with an empty host broke after `dar`
    re-encoded it."""
    with psycopg.connect(pg_base_url) as conn:
        sockets = conn.execute("SHOW unix_socket_directories").fetchone()
        port = conn.execute("SHOW port").fetchone()
    assert sockets and sockets[0] and port, "the test server listens on no unix socket"
    folder = sockets[0].split(",")[0].strip()
    schema = fresh_schema()
    user = psycopg.conninfo.conninfo_to_dict(pg_base_url).get("user", "postgres")
    url = (
        f"postgresql:///postgres?host={quote(folder, safe='')}&port={port[0]}"
        f"&user={user}&schema={schema}"
    )
    with Runtime(url) as rt:
        assert rt.execute(charge_once, {"order": "A"}).status == Status.EXECUTED
    assert "agent_tool_claims" in tables_in(pg_base_url, schema)


SCRIPT = """
import asyncio, os, sys
sys.path.insert(0, {repo!r})
from dar import AsyncRuntime, Effect, tool

server = None
url = os.environ.get("DAR_TEST_POSTGRES_URL")
if not url:
    from tests.support.pg import start_server
    server = start_server()
    url = server.url
    print("DATADIR", getattr(server, "data", ""), flush=True)

@tool(effect=Effect.MUTATE_LOCAL)
async def slow(n: int) -> int:
    await asyncio.sleep(1.0)
    return n

async def main() -> None:
    rt = AsyncRuntime(url + "?schema=t18", wait=20)  # never closed, as a careless user would
    results = await asyncio.gather(*[rt.execute(slow, {{"n": i % 3}}) for i in range(60)])
    print(sorted({{r.status.value for r in results}}), flush=True)

try:
    asyncio.run(main())
    print("asyncio.run returned", flush=True)
finally:
    if server is not None:
        server.close()
"""


def test_an_unclosed_async_runtime_does_not_hang_the_exit(tmp_path: Path) -> None:
    """Found by the airtight review: an `AsyncRuntime` on Postgres that is not closed, in a process
    that also started the server (as a test suite's fixture does), makes `asyncio.run()` hang
    forever at exit after duplicates waited on LISTEN/NOTIFY."""
    script = tmp_path / "unclosed.py"
    script.write_text(textwrap.dedent(SCRIPT.format(repo=str(REPO))))
    env = {k: v for k, v in os.environ.items() if k != "DAR_TEST_POSTGRES_URL"}
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=45)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        _stop_orphan_server(out)
        pytest.fail(f"the process did not exit within 45 s:\n{out}")
    assert proc.returncode == 0, out
    assert "asyncio.run returned" in out and "'cached'" in out, out


def _stop_orphan_server(output: str) -> None:
    """The script's server outlives a killed script: stop it by its postmaster's pid."""
    import shutil
    import signal

    match = re.search(r"^DATADIR (\S+)$", output, re.M)
    if not match:
        return
    pidfile = Path(match.group(1)) / "postmaster.pid"
    if pidfile.exists():
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text().splitlines()[0]), signal.SIGQUIT)
    time.sleep(1)
    shutil.rmtree(Path(match.group(1)).parent, ignore_errors=True)


def test_postgres_url_without_the_extra_names_it() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None; sys.modules['psycopg_pool'] = None\n"
        "import dar\n"
        "try:\n"
        "    dar.Runtime('postgresql://app@db/agents')\n"
        "except dar.ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'psycopg[binary]' psycopg-pool" in out.stdout
