"""`dar verify`: tampering that needs no hash (cut tails, deleted heads, fake checkpoints,
claim outputs) is caught, `--anchor` catches a consistently rehashed chain, and a mistyped
path creates nothing. On a SQLite file and on Postgres."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dar import Deny, Effect, Runtime, rule, tool
from dar.audit.chain import content_hash, link
from dar.store import split_schema
from tests.support.cli import cli, dar_cmd


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps at the terminal width: keep messages on one line for the assertions."""
    monkeypatch.setenv("COLUMNS", "400")


@tool(effect=Effect.MUTATE_EXTERNAL, key=lambda i: f"pay:{i['order']}")
def pay(order: str, amount: int) -> dict[str, int]:
    return {"paid": amount}


no_x = rule(applies_to="pay", name="no_x")(
    lambda i, c: Deny("order X is blocked") if i["order"] == "X" else True
)


def record(url: str) -> None:
    with Runtime(url, rules=[no_x]) as rt:
        for order, amount in (("A", 10), ("A", 10), ("X", 5), ("B", 20)):
            rt.execute(pay, {"order": order, "amount": amount}, correlation_id="s-1")
        rt.execute(pay, {"order": "C", "amount": 30}, correlation_id="s-2")


def owner_sql(url: str, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
    """Run SQL as the database owner, going around the append-only triggers (as an attacker
    with write access would). ``?`` placeholders; returns the last statement's rows."""
    rows: list[Any] = []
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
        saved = triggers.fetchall()
        for name, _ in saved:
            conn.execute(f"DROP TRIGGER {name}")
        for sql, params in statements:
            rows = conn.execute(sql, tuple(params)).fetchall()
        for _, create in saved:
            conn.execute(create)
        conn.close()
        return rows
    base, schema = split_schema(url)
    with psycopg.connect(base) as pg:
        pg.execute(f'SET LOCAL search_path TO "{schema}"')
        pg.execute("ALTER TABLE agent_tool_events DISABLE TRIGGER USER")
        for sql, params in statements:
            cur = pg.execute(sql.replace("?", "%s"), tuple(params))
            rows = cur.fetchall() if cur.description else []
        pg.execute("ALTER TABLE agent_tool_events ENABLE TRIGGER USER")
    return rows


LAST_OF_S1 = "(SELECT max(seq) FROM agent_tool_events WHERE correlation_id = 's-1')"


def tamper_case(url: str, case: str) -> None:
    if case == "cut-tail-delete-head":
        owner_sql(
            url,
            [
                (f"DELETE FROM agent_tool_events WHERE seq = {LAST_OF_S1}", ()),
                ("DELETE FROM agent_tool_chain_heads WHERE correlation_id = 's-1'", ()),
            ],
        )
    elif case == "cut-tail-move-head":
        owner_sql(
            url,
            [
                (f"DELETE FROM agent_tool_events WHERE seq = {LAST_OF_S1}", ()),
                (
                    "UPDATE agent_tool_chain_heads SET head = (SELECT row_hash FROM"
                    f" agent_tool_events WHERE seq = {LAST_OF_S1}) WHERE correlation_id = 's-1'",
                    (),
                ),
            ],
        )
    elif case == "delete-whole-chain":
        owner_sql(
            url,
            [
                ("DELETE FROM agent_tool_events WHERE correlation_id = 's-1'", ()),
                ("DELETE FROM agent_tool_chain_heads WHERE correlation_id = 's-1'", ()),
            ],
        )
    elif case == "cut-front-fake-checkpoint":
        first = owner_sql(
            url,
            [
                (
                    "SELECT seq, row_hash FROM agent_tool_events WHERE correlation_id = 's-1'"
                    " ORDER BY seq LIMIT 2",
                    (),
                )
            ],
        )
        seq, row_hash = first[-1]
        points = f'{{"s-1": {{"seq": {seq}, "row_hash": "{row_hash}"}}}}'
        insert: tuple[str, tuple[Any, ...]]
        if url.startswith("sqlite:"):
            insert = (
                "INSERT INTO agent_tool_purges (purged_at, before, rows, checkpoints)"
                " VALUES (?, ?, 2, ?)",
                (time.time(), 0.0, points),
            )
        else:
            insert = (
                "INSERT INTO agent_tool_purges (purged_at, before, rows, checkpoints)"
                " VALUES (now(), to_timestamp(0), 2, ?::jsonb)",
                (points,),
            )
        owner_sql(url, [(f"DELETE FROM agent_tool_events WHERE seq <= {seq}", ()), insert])
    elif case == "claim-output":
        owner_sql(
            url,
            [
                (
                    "UPDATE agent_tool_claims SET output = ? WHERE state = 'done'",
                    ('{"paid":999999}',),
                )
            ],
        )
    else:  # pragma: no cover
        raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "cut-tail-delete-head",
        "cut-tail-move-head",
        "delete-whole-chain",
        "cut-front-fake-checkpoint",
        "claim-output",
    ],
)
def test_verify_catches_tampering_that_needs_no_hash(
    shared_url: str, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by the airtight review: `dar verify` misses: cutting a chain's tail and moving or
    deleting its head row; deleting a whole chain and its head; cutting the front and inserting a
    fake purge checkpoint ... And `agent_tool_claims.output` ... is not covered at all."""
    record(shared_url)
    assert cli(["verify", "--db", shared_url], capsys)[0] == 0
    tamper_case(shared_url, case)
    code, out = cli(["verify", "--db", shared_url], capsys)
    assert code == 1, f"verify did not see {case}: {out}"


def test_verify_anchor_catches_a_consistently_rehashed_chain(
    shared_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by the airtight review: an attacker who rehashes a whole chain with write access is
    caught only by anchoring heads outside the database: offer `dar verify --anchor FILE`."""
    record(shared_url)
    anchor = tmp_path / "heads.anchor"
    code, out = cli(["verify", "--db", shared_url, "--anchor", str(anchor)], capsys)
    assert code == 0, out
    assert anchor.exists() and anchor.read_text().strip()
    # Rewrite session s-1 so that every hash follows: the refusal becomes an approval.
    with Runtime(shared_url) as rt:
        events = rt.events(correlation_id="s-1")
    statements: list[tuple[str, Sequence[Any]]] = []
    previous = None
    for ev in events:
        row = dataclasses.asdict(ev)
        if ev.status == "rejected":
            row["rejection_reason"] = "approved by the manager"
        previous = link(previous, content_hash(row))
        statements.append(
            (
                "UPDATE agent_tool_events SET rejection_reason = ?, row_hash = ? WHERE seq = ?",
                (row["rejection_reason"], previous, ev.seq),
            )
        )
    statements.append(
        ("UPDATE agent_tool_chain_heads SET head = ? WHERE correlation_id = 's-1'", (previous,))
    )
    owner_sql(shared_url, statements)
    code, out = cli(["verify", "--db", shared_url, "--anchor", str(anchor)], capsys)
    assert code == 1, f"the anchored head did not catch a rehashed chain: {out}"


def test_verify_on_a_mistyped_path_creates_nothing(tmp_path: Path) -> None:
    """Found by the airtight review: `dar verify` on a mistyped path creates an empty database and
    reports OK."""
    missing = tmp_path / "typo.db"
    out = dar_cmd("verify", "--db", f"sqlite:///{missing}")
    text = (out.stdout + out.stderr).decode()
    assert out.returncode != 0, f"verify reported on a database that does not exist: {text}"
    assert not missing.exists()
    assert "Traceback" not in text
    nowhere = tmp_path / "no" / "such" / "dir" / "x.db"
    out = dar_cmd("verify", "--db", f"sqlite:///{nowhere}")
    text = (out.stdout + out.stderr).decode()
    assert out.returncode != 0 and "Traceback" not in text, text
    assert not nowhere.parent.exists()
