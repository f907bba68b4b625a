"""Issue 11 ("Airtight"): Postgres-only items: threads sharing one runtime, least privilege,
libpq URLs, the retry budget, and an unclosed AsyncRuntime at exit."""

from __future__ import annotations

import contextlib
import os
import random
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from dar import ConfigurationError, Effect, Runtime, Status, StoreError, tool
from dar.store.postgres import PostgresStore

from tests.conftest import fresh_schema

REPO = Path(__file__).resolve().parent.parent


@tool(name="charge", effect=Effect.MUTATE_LOCAL, key=lambda i: f"charge:{i['order']}")
def charge_once(order: str) -> dict[str, str]:
    return {"charged": order}


# --- item 8: one Runtime, 16 threads ------------------------------------------------------------


def deadlocks(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def test_item_08_one_runtime_shared_by_16_threads(pg_base_url: str) -> None:
    """8. Postgres, one `Runtime` shared by 16 threads (failed in every run): wrong outputs,
    raw errors, keys left `running`, `deadlock detected`."""
    schema = fresh_schema()
    before = deadlocks(pg_base_url)
    ran: Counter[int] = Counter()
    lock = threading.Lock()

    @tool(effect=Effect.MUTATE_LOCAL, key=lambda i: f"sq:{i['n']}")
    def square(n: int) -> dict[str, int]:
        with lock:
            ran[n] += 1
        return {"n": n, "sq": n * n}

    rt = Runtime(f"{pg_base_url}?schema={schema}", wait=60)
    errors: list[str] = []
    results: list[tuple[int, Status, Any]] = []
    stop = time.monotonic() + 7.0

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        while time.monotonic() < stop:
            n = rnd.randrange(300)  # fresh at first, mostly repeats later
            corr = f"c{rnd.randrange(4)}"
            try:
                res = rt.execute(square, {"n": n}, correlation_id=corr)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            results.append((n, res.status, res.output))

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    rt.close()
    assert errors == [], f"{len(errors)} errors, first: {errors[:3]}"
    wrong = [r for r in results if r[2] != {"n": r[0], "sq": r[0] * r[0]}]
    assert wrong == [], f"{len(wrong)} wrong answers, first: {wrong[:3]}"
    assert {s for _, s, _ in results} <= {Status.EXECUTED, Status.CACHED}
    executed = Counter(n for n, s, _ in results if s == Status.EXECUTED)
    assert set(executed.values()) == {1} and ran == executed, "an effect ran twice"
    with psycopg.connect(pg_base_url) as conn:
        running = conn.execute(
            f"SELECT count(*) FROM \"{schema}\".agent_tool_claims WHERE state = 'running'"
        ).fetchone()
    assert running == (0,), "keys left running with their effect done"
    time.sleep(1.5)  # backends report their statistics at most once a second
    assert deadlocks(pg_base_url) == before, "deadlock detected on the chain heads"


# --- item 13: least privilege ------------------------------------------------------------------


def app_role(base: str, schema: str, *, migrated: bool = True) -> str:
    """A role with exactly the README's grants; returns its URL (without ?schema=)."""
    if migrated:
        PostgresStore(base, schema=schema).close()  # migrated by the owner
    role = f"app_{schema}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        if migrated:
            s = f'"{schema}"'
            conn.execute(f"GRANT USAGE ON SCHEMA {s} TO {role}")
            conn.execute(f"GRANT SELECT, INSERT ON {s}.agent_tool_events TO {role}")
            conn.execute(f"GRANT SELECT, INSERT, UPDATE ON {s}.agent_tool_claims TO {role}")
            conn.execute(f"GRANT SELECT, INSERT, UPDATE ON {s}.agent_tool_chain_heads TO {role}")
            conn.execute(
                f"GRANT SELECT ON {s}.dar_migrations, {s}.dar_meta, {s}.agent_tool_purges TO {role}"
            )
    return base.replace("postgres@", f"{role}@", 1)


def test_item_13_the_readme_one_liner_works_for_a_least_privilege_role(pg_base_url: str) -> None:
    """13. Postgres: a least-privilege role (the README's grants) cannot use the README's own
    one-liner (auto-migration runs `CREATE SCHEMA IF NOT EXISTS`)."""
    schema = fresh_schema()
    app = app_role(pg_base_url, schema)
    with Runtime(f"{app}?schema={schema}") as rt:
        assert rt.execute(charge_once, {"order": "A"}).status == Status.EXECUTED
        assert rt.execute(charge_once, {"order": "A"}).status == Status.CACHED


def test_item_13_an_unmigrated_schema_says_to_run_dar_migrate(pg_base_url: str) -> None:
    """13. ... Migration must be skippable and detected (the role checks the schema version
    and says what to run)."""
    schema = fresh_schema()
    app = app_role(pg_base_url, schema, migrated=False)
    with pytest.raises((StoreError, ConfigurationError), match="dar migrate"):
        Runtime(f"{app}?schema={schema}")


@pytest.mark.parametrize("command", ["events", "stats", "verify", "gc"])
def test_item_13_commands_with_least_privilege_work_or_name_the_grant(
    pg_base_url: str, command: str
) -> None:
    """13. ... nor `dar events/stats/verify/gc`: raw `InsufficientPrivilege` tracebacks ...
    missing privileges are a `StoreError` naming the grant."""
    schema = fresh_schema()
    app = app_role(pg_base_url, schema)
    with Runtime(PostgresStore(pg_base_url, schema=schema)) as rt:
        rt.execute(charge_once, {"order": "A"}, correlation_id="s13")
    out = subprocess.run(
        [sys.executable, "-m", "dar.cli", command, "--db", f"{app}?schema={schema}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "300"},
    )
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text
    if out.returncode != 0:
        assert out.returncode == 2, text
        assert len(text.strip().splitlines()) == 1, text
        assert re.search(r"(?i)grant|privilege", text), text


# --- item 14: libpq URLs pass through --------------------------------------------------------


def tables_in(base: str, schema: str) -> set[str]:
    with psycopg.connect(base) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
        return {r[0] for r in rows}


@pytest.mark.parametrize(
    "options", ["-c%20statement_timeout%3D5000", "-c%20search_path%3Dfoo"], ids=["timeout", "path"]
)
def test_item_14_libpq_options_with_a_space_pass_through(pg_base_url: str, options: str) -> None:
    """14. Valid libpq URLs break after `dar` re-encodes them (... `options=-c ...` with a
    space); pass connection strings through untouched except for `dar`'s own parameters."""
    schema = fresh_schema()
    url = f"{pg_base_url}?application_name=dar%20airtight%2014&options={options}&schema={schema}"
    with Runtime(url) as rt:
        assert rt.execute(charge_once, {"order": "A"}).status == Status.EXECUTED
        with psycopg.connect(pg_base_url) as conn:
            names = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                ("dar airtight 14",),
            ).fetchone()
        assert names is not None and names[0] >= 1, "application_name did not arrive intact"
    assert "agent_tool_events" in tables_in(pg_base_url, schema)  # ?schema= still honoured


def test_item_14_a_unix_socket_url_with_an_empty_host_works(pg_base_url: str) -> None:
    """14. ... a unix socket with an empty host."""
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


# --- item 15: one configurable retry budget -------------------------------------------------


def test_item_15_the_postgres_retry_budget_is_configurable() -> None:
    """15. The retry window: README says 15 s, a connection-slot exhaustion gave up after
    30 s. One documented, configurable budget."""
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


# --- item 18: an unclosed AsyncRuntime at exit ---------------------------------------------

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


def test_item_18_an_unclosed_async_runtime_does_not_hang_the_exit(tmp_path: Path) -> None:
    """18. An `AsyncRuntime` on Postgres that is not closed, in a process that also started
    the server (as a test suite's fixture does), makes `asyncio.run()` hang forever at exit
    after duplicates waited on LISTEN/NOTIFY."""
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


EXIT_SCRIPT = """
import sys
from dar import Effect, Runtime, tool

@tool(effect=Effect.MUTATE_LOCAL)
def t(n: int) -> int:
    return n

rt = Runtime(sys.argv[1])  # never closed
for _ in range(3):
    rt.execute(t, {"n": 1}, correlation_id="exit")
"""


def test_item_20_an_unclosed_postgres_runtime_writes_its_hit_rows_at_exit(
    pg_base_url: str,
) -> None:
    """20. Buffered `cached` rows are lost at a normal interpreter exit when the runtime is
    not closed — on Postgres too."""
    url = f"{pg_base_url}?schema={fresh_schema()}"
    done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, url], timeout=60)
    assert done.returncode == 0
    with Runtime(url) as rt:
        got = sorted(e.status for e in rt.events(correlation_id="exit"))
    assert got == ["cached", "cached", "executed", "started"]
