"""Retention: `gc` removes expired claims only, `purge` removes old rows and leaves the rest
verifiable, and no application role can purge."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest

from dar import (
    Effect,
    Runtime,
    tool,
)
from dar.cli.main import main
from dar.core.ops import GetClaim
from tests.conftest import Clock
from tests.support.calls import MakeRuntime
from tests.support.sessions import check, covered, flaky, record_session, send_message


def test_gc_removes_expired_claims_only(make_runtime: MakeRuntime, clock: Clock) -> None:
    rt = make_runtime(clock=clock)
    short = tool(name="short", effect=Effect.MUTATE_LOCAL, window=10)(lambda n: n)
    rt.execute(short, {"n": 1})
    kept = rt.execute(send_message, {"order": "1", "text": "x"})  # no window: kept forever
    rt.execute(flaky, {"n": 1})  # released
    clock.advance(11)
    store: Any = rt.store
    assert store.gc(clock.now) == 2
    assert store.get_claim(GetClaim(f"short:{rt.events(tool='short')[0].input_hash}")) is None
    assert kept.key is not None and store.get_claim(GetClaim(kept.key)) is not None
    assert len(rt.events()) == 6  # the log is untouched


def test_purge_keeps_the_rest_verifiable(make_runtime: MakeRuntime, clock: Clock) -> None:
    rt = make_runtime(clock=clock, rules=[covered])
    record_session(rt, "old")
    clock.advance(86400)
    cutoff = dt.datetime.fromtimestamp(clock.now - 1, tz=dt.timezone.utc)
    record_session(rt, "new")
    rt.execute(send_message, {"order": "X", "text": "y"}, correlation_id="old")  # old goes on
    store: Any = rt.store
    before = len(rt.events())
    from dar.core.rows import admin_row
    from dar.core.states import EventKind

    rows, points = store.purge(cutoff, clock.now, admin_row(EventKind.PURGED, "test", clock.now))
    remaining = rt.events()
    assert rows > 0 and len(remaining) == before - rows + 1  # + the purge's own row
    assert all(e.created_at >= cutoff for e in remaining if e.status != "purged")
    assert set(points) == {"old"}
    assert remaining[-1].status == "purged"
    report = check(rt)
    assert report.ok, report.broken
    with pytest.raises(Exception, match="append-only"):
        tamper_free_delete(rt)


def tamper_free_delete(rt: Runtime) -> None:
    from tests.conftest import execute_sql

    execute_sql(rt.store, "DELETE FROM agent_tool_events")


def test_purge_command_needs_yes(shared_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Runtime(shared_url) as rt:
        rt.execute(send_message, {"order": "1", "text": "x"})
    assert main(["purge", "--before", "2000-01-01", "--db", shared_url]) == 2
    assert main(["purge", "--before", "2999-01-01", "--db", shared_url, "--yes"]) == 0
    assert "purged 2 events" in capsys.readouterr().out
    assert main(["verify", "--db", shared_url]) == 0
    assert main(["gc", "--db", shared_url]) == 0


def test_app_role_cannot_purge(pg_base_url: str) -> None:
    from tests.conftest import fresh_schema

    schema = fresh_schema()
    rt = Runtime(f"{pg_base_url}?schema={schema}")
    rt.execute(send_message, {"order": "1", "text": "x"})
    role = f"app_{schema}"
    with psycopg.connect(pg_base_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}')
        # Even with DELETE granted by mistake, only the trigger stands in the way.
        conn.execute(f'GRANT SELECT, INSERT, DELETE ON "{schema}".agent_tool_events TO {role}')
    app_url = pg_base_url.replace("postgres@", f"{role}@", 1)
    with (
        psycopg.connect(app_url) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
    ):
        conn.execute("SET LOCAL dar.purge = 'on'")
        conn.execute(f'DELETE FROM "{schema}".agent_tool_events')
    assert len(rt.events()) == 2
    rt.close()
