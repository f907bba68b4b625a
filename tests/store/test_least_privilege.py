"""Postgres with least privilege: a role with the README's grants uses the runtime and the
`dar` commands, cannot rewrite history, and is told to run `dar migrate`."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys

import psycopg
import pytest

from dar import ConfigurationError, Effect, Runtime, Status, StoreError, tool
from dar.store.postgres import PostgresStore
from tests.conftest import fresh_schema


@tool(name="charge", effect=Effect.MUTATE_LOCAL, key=lambda i: f"charge:{i['order']}")
def charge_once(order: str) -> dict[str, str]:
    return {"charged": order}


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


def test_the_readme_one_liner_works_for_a_least_privilege_role(pg_base_url: str) -> None:
    """Found by the airtight review: Postgres: a least-privilege role (the README's grants) cannot
    use the README's own one-liner (auto-migration runs `CREATE SCHEMA IF NOT EXISTS`)."""
    schema = fresh_schema()
    app = app_role(pg_base_url, schema)
    with Runtime(f"{app}?schema={schema}") as rt:
        assert rt.execute(charge_once, {"order": "A"}).status == Status.EXECUTED
        assert rt.execute(charge_once, {"order": "A"}).status == Status.CACHED


def test_an_unmigrated_schema_says_to_run_dar_migrate(pg_base_url: str) -> None:
    """Found by the airtight review: migration must be skippable and detected (the role checks the
    schema version and says what to run)."""
    schema = fresh_schema()
    app = app_role(pg_base_url, schema, migrated=False)
    with pytest.raises((StoreError, ConfigurationError), match="dar migrate"):
        Runtime(f"{app}?schema={schema}")


@pytest.mark.parametrize("command", ["events", "stats", "verify", "gc"])
def test_commands_with_least_privilege_work_or_name_the_grant(
    pg_base_url: str, command: str
) -> None:
    """Found by the airtight review: `dar events/stats/verify/gc` gave a least-privilege role raw
    `InsufficientPrivilege` tracebacks; missing privileges must be a `StoreError` naming the
    grant."""
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


@tool(effect=Effect.MUTATE_EXTERNAL)
def charge(order: str) -> dict[str, str]:
    return {"charged": order}


def test_least_privilege_role_cannot_rewrite_history(pg_base_url: str) -> None:
    schema = fresh_schema()
    PostgresStore(pg_base_url, schema=schema).close()  # migrated by the owner
    role = f"app_{schema}"
    with psycopg.connect(pg_base_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        # Exactly the grants the migration documents.
        conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}')
        conn.execute(f'GRANT SELECT, INSERT ON "{schema}".agent_tool_events TO {role}')
        conn.execute(f'GRANT SELECT, INSERT, UPDATE ON "{schema}".agent_tool_claims TO {role}')
        conn.execute(f'GRANT SELECT ON "{schema}".dar_migrations TO {role}')
        conn.execute(f'GRANT SELECT, INSERT, UPDATE ON "{schema}".agent_tool_chain_heads TO {role}')
        conn.execute(f'GRANT SELECT ON "{schema}".dar_meta, "{schema}".agent_tool_purges TO {role}')
    app_url = pg_base_url.replace("postgres@", f"{role}@", 1)
    rt = Runtime(PostgresStore(app_url, schema=schema, migrate=False))
    assert rt.execute(charge, {"order": "B"}).status == Status.EXECUTED
    assert rt.execute(charge, {"order": "B"}).status == Status.CACHED
    with psycopg.connect(app_url, autocommit=True) as conn:
        for sql in (
            "UPDATE {s}.agent_tool_events SET status = 'x'",
            "DELETE FROM {s}.agent_tool_events",
            "TRUNCATE {s}.agent_tool_events",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.format(s=f'"{schema}"'))
    # Even the owner is refused by the trigger.
    with psycopg.connect(pg_base_url, autocommit=True) as conn:
        for sql in (
            "UPDATE {s}.agent_tool_events SET status = 'x'",
            "DELETE FROM {s}.agent_tool_events",
            "TRUNCATE {s}.agent_tool_events",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(sql.format(s=f'"{schema}"'))
    assert [e.status for e in rt.events()] == ["started", "executed", "cached"]
    rt.close()


def test_a_role_that_may_not_create_tables_leaves_the_months_to_the_owner(
    pg_base_url: str,
) -> None:
    """The log's month partitions are created by a role that may: a least-privilege store
    still starts, runs gc and writes (its rows land in DEFAULT) when its month is missing."""
    schema = fresh_schema()
    app = app_role(pg_base_url, schema)
    with psycopg.connect(pg_base_url, autocommit=True) as conn:
        conn.execute(f'GRANT DELETE ON "{schema}".agent_tool_claims TO app_{schema}')
    later = dt.datetime(2031, 5, 1, tzinfo=dt.timezone.utc).timestamp()
    store = PostgresStore(app, schema=schema)
    assert store.gc(later) == 0
    with Runtime(store, clock=lambda: later) as rt:
        rt.execute(charge, {"order": "later"})
        assert [e.status for e in rt.events()] == ["started", "executed"]
    with psycopg.connect(pg_base_url) as conn:
        found = conn.execute(f'SELECT count(*) FROM "{schema}".agent_tool_events_default')
        assert found.fetchone() == (2,)
