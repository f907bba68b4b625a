"""Issue 11 ("Airtight"): fork safety, SQLite storage faults and redaction leaks.

(Split from test_airtight.py to keep each file short.)
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dar import Effect, Runtime, SQLiteStore, Status, StoreError, tool
from dar.cli.main import main

# --- item 7: fork ----------------------------------------------------------------------------


@tool(effect=Effect.MUTATE_LOCAL)
def note(n: int) -> int:
    return n


def calls(rt: Runtime, who: str, base: int) -> None:
    for n in range(base, base + 3):
        assert rt.execute(note, {"n": n}, correlation_id=who).status == Status.EXECUTED
        assert rt.execute(note, {"n": n}, correlation_id=who).status == Status.CACHED
    rt.close()


def test_item_07_forking_after_opening_a_runtime_is_safe_in_both_processes(
    tmp_path: Path,
) -> None:
    """7. After `fork()`, the parent's buffered rows collide (`UNIQUE constraint failed:
    agent_tool_events.event_id` on SQLite)."""
    db = tmp_path / "fork.db"
    rt = Runtime(f"sqlite:///{db}?hit_flush=60")  # hit rows stay buffered until a write
    rt.execute(note, {"n": 0}, correlation_id="pre")
    for _ in range(3):
        assert rt.execute(note, {"n": 0}, correlation_id="pre").status == Status.CACHED
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running any of pytest's teardown
        try:
            os.close(read)
            calls(rt, "child", 100)
            message = b"ok"
        except BaseException as exc:
            message = repr(exc).encode()[:4000]
        os.write(write, message)
        os._exit(0)
    os.close(write)
    parent_error = None
    try:
        calls(rt, "parent", 200)
    except Exception as exc:
        parent_error = exc
    deadline = time.monotonic() + 60
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.02)
    child = os.read(read, 4096).decode()
    os.close(read)
    assert parent_error is None, f"parent: {parent_error!r}"
    assert child == "ok", f"child: {child}"
    with Runtime(f"sqlite:///{db}") as check:
        for who in ("child", "parent"):
            got = Counter(e.status for e in check.events(correlation_id=who))
            assert got == {"started": 3, "executed": 3, "cached": 3}, (who, got)
        pre = Counter(e.status for e in check.events(correlation_id="pre"))
        assert pre == {"started": 1, "executed": 1, "cached": 3}, pre
    assert main(["verify", "--db", f"sqlite:///{db}"]) == 0


# --- item 12: SQLite storage faults ---------------------------------------------------------


def test_item_12_a_corrupt_file_is_a_store_error(tmp_path: Path) -> None:
    """12. SQLite disk full, a read-only file, a corrupt file: raw
    `sqlite3.OperationalError`/`DatabaseError` instead of `StoreError`."""
    db = tmp_path / "corrupt.db"
    db.write_bytes(b"this is not a database, it is a shopping list\n" * 200)
    with pytest.raises(StoreError):
        Runtime(f"sqlite:///{db}")


def test_item_12_a_read_only_file_is_a_store_error() -> None:
    """12. ... a read-only file ... `StoreError`. (Root ignores file modes, so the check
    runs in a forked child that becomes `nobody`.)"""
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


def test_item_12_disk_full_is_a_store_error(tmp_path: Path) -> None:
    """12. ... disk full ... `StoreError`."""
    rt = Runtime(SQLiteStore(tmp_path / "full.db", retry_for=1.0))
    conn: sqlite3.Connection = rt.store._conn  # type: ignore[attr-defined]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreError):
        rt.execute(note, {"n": "x" * 200_000})


def test_item_12_disk_full_during_the_handler_never_runs_it_twice(tmp_path: Path) -> None:
    """12. ... after a disk-full during the handler a `mutate-local` effect ran twice."""
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


# --- item 17: redaction leaks -----------------------------------------------------------------

CARD = 2**53 - 1  # the largest integer canonical JSON accepts
BACKUP = 4111111111111111.0  # a card number that arrives as a float
MOBILE = "+51-987-654-321"
CODE = "Ωж"  # two characters
NAME = "Muñoz-Ærø"
ALIAS = 'O\'Brien "Bob"'
SECRET = "ZEBRA-7731-SECRET"


def leaked_forms() -> dict[str, list[str]]:
    """Each raw value, and how it looks escaped (JSON, ASCII JSON, repr)."""
    return {
        "card (int)": [str(CARD)],
        "backup card (float)": ["4111111111111111"],
        "phone (also a dict key)": [MOBILE],
        "short code": [CODE],
        "name": [NAME, json.dumps(NAME)[1:-1]],
        "alias": [ALIAS, repr(ALIAS)[1:-1], json.dumps(ALIAS)[1:-1]],
        "secret (redact= function)": [SECRET],
    }


def database_text(url: str) -> bytes:
    """Every byte of a SQLite database, or every value of every Postgres table."""
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:///")
        return b"".join(
            Path(path + suffix).read_bytes()
            for suffix in ("", "-wal", "-journal")
            if Path(path + suffix).exists()
        )
    from dar.store import split_schema

    base, schema = split_schema(url)
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                out.append(str(k))
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif value is not None:
            out.append(str(value))

    with psycopg.connect(base) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
        ).fetchall()
        for (table,) in tables:
            for row in conn.execute(f'SELECT * FROM "{schema}"."{table}"'):
                for value in row:
                    walk(value)
                    if isinstance(value, (dict, list)):
                        out.append(json.dumps(value, ensure_ascii=False))
    return "\n".join(out).encode()


def test_item_17_redacted_values_appear_nowhere_in_the_database(shared_url: str) -> None:
    """17. Redaction leaks: a redacted field used as a dict key, a big-int card number, a
    `redact=` function's output, a short value and an escaped repr still appear raw in the
    SQLite file and the Postgres tables/data files."""

    @tool(
        effect=Effect.MUTATE_EXTERNAL,
        redact=["card", "backup", "phone", "code", "name", "alias"],
        key=lambda i: f"pay:{i['name']}:{i['fail']}",
    )
    def pay(
        card: int,
        backup: float,
        phone: str,
        code: str,
        name: str,
        alias: str,
        notes: Any,
        fail: bool,
    ) -> dict[str, Any]:
        if fail:
            raise ValueError(f"declined for {json.dumps(name)} alias {alias!r} code {code}")
        return {"charged": card, "backup": backup, "note": f"code {code} ok"}

    def hide(value: Any) -> Any:
        return (
            {**value, "secret": "***"} if isinstance(value, dict) and "secret" in value else value
        )

    @tool(effect=Effect.MUTATE_EXTERNAL, redact=hide)
    def vault(secret: str, fail: bool) -> dict[str, str]:
        if fail:
            raise ValueError(f"vault refused {SECRET}")
        return {"stored": secret}

    base = {
        "card": CARD,
        "backup": BACKUP,
        "phone": MOBILE,
        "code": CODE,
        "name": NAME,
        "alias": ALIAS,
        "notes": {MOBILE: "call after 6pm"},
    }
    with Runtime(shared_url) as rt:
        assert rt.execute(pay, {**base, "fail": False}, correlation_id="pii").ok
        assert rt.execute(pay, {**base, "fail": False}, correlation_id="pii").ok
        assert rt.execute(pay, {**base, "fail": True}, correlation_id="pii").status == "failed"
        assert rt.execute(vault, {"secret": SECRET, "fail": False}, correlation_id="pii").ok
        assert rt.execute(vault, {"secret": SECRET, "fail": True}).status == "failed"
    dumped = database_text(shared_url)
    assert b"redacted:" in dumped  # the search does see the rows
    leaks = [
        f"{what}: {form!r}"
        for what, forms in leaked_forms().items()
        for form in forms
        for variant in {form, json.dumps(form, ensure_ascii=False)[1:-1]}
        if variant.encode() in dumped
    ]
    assert leaks == [], "raw values in the database:\n" + "\n".join(leaks)
