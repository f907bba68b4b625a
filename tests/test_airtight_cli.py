"""Issue 11 ("Airtight"): the `dar` command's items (resolve, verify, terminal safety, dates,
mistyped paths), on a SQLite file and on Postgres."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dar import Deny, Effect, Runtime, rule, tool
from dar.audit.chain import content_hash, link
from dar.cli.main import main
from dar.core.ops import GetClaim
from dar.store import split_schema


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps at the terminal width: keep messages on one line for the assertions."""
    monkeypatch.setenv("COLUMNS", "400")


def cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run `dar` in-process; an unknown option (argparse's exit 2) is a return code too."""
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def dar_cmd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m dar.cli` with its output on pipes (no terminal: no styling of its own)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "dar.cli", *args], capture_output=True, timeout=timeout, env=env
    )


# --- item 5: resolve refuses a live claim unless forced -----------------------------------------


def test_item_05_resolve_refuses_a_live_claim_unless_forced(
    shared_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """5. `dar resolve --not-executed` releases a claim that is still running with a live
    lease, and a second worker then runs the irreversible handler concurrently."""
    release = threading.Event()
    ran: list[str] = []

    @tool(effect=Effect.IRREVERSIBLE, key=lambda i: f"wire:{i['n']}", lease=300)
    def wire(n: int) -> str:
        ran.append("wire")
        release.wait(30)
        return "sent"

    allow = rule(applies_to="*", name="allow")(lambda i, c: True)
    rt = Runtime(shared_url, rules=[allow])
    worker = threading.Thread(target=rt.execute, args=(wire, {"n": 1}))
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while ran != ["wire"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        key = next(e.idempotency_key for e in rt.events(status="started"))
        assert key is not None
        code, out = cli(["resolve", key, "--db", shared_url, "--not-executed"], capsys)
        assert code == 1, f"a live claim was released: {out}"
        assert rt.owner in out, f"the lease owner is not named: {out}"
        claim = rt.store.get_claim(GetClaim(key))
        assert claim is not None and claim.state == "running"
        code, out = cli(["resolve", key, "--db", shared_url, "--not-executed", "--force"], capsys)
        assert code == 0, out
        assert rt.store.get_claim(GetClaim(key)).state == "released"  # type: ignore[union-attr]
    finally:
        release.set()
        worker.join(30)
        rt.close()


# --- item 11: verify covers heads, checkpoints and claims; --anchor -----------------------------


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
            cur = pg.execute(sql.replace("?", "%s"), tuple(params))  # type: ignore[arg-type]
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
def test_item_11_verify_catches_tampering_that_needs_no_hash(
    shared_url: str, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """11. `dar verify` misses: cutting a chain's tail and moving or deleting its head row;
    deleting a whole chain and its head; cutting the front and inserting a fake purge
    checkpoint ... And `agent_tool_claims.output` ... is not covered at all."""
    record(shared_url)
    assert cli(["verify", "--db", shared_url], capsys)[0] == 0
    tamper_case(shared_url, case)
    code, out = cli(["verify", "--db", shared_url], capsys)
    assert code == 1, f"verify did not see {case}: {out}"


def test_item_11_verify_anchor_catches_a_consistently_rehashed_chain(
    shared_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """11. ... an attacker who rehashes a whole chain with write access is caught only by
    anchoring heads outside the database: offer `dar verify --anchor FILE`."""
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


# --- item 16: the terminal, dates, mistyped paths ----------------------------------------------

EVIL = ["\x1b]0;evil\x07", "\x1b[2J", "\x1b]52;c;ZXZpbA==\x07"]


def test_item_16_log_contents_cannot_drive_the_terminal(tmp_path: Path) -> None:
    """16. CLI: raw escape sequences from log contents (`ESC]0;`, `ESC[2J`, OSC 52
    clipboard writes) reach the operator's terminal in `events`, `trace` and `stats`."""
    url = f"sqlite:///{tmp_path / 'evil.db'}"
    evil = "".join(EVIL)

    @tool(name=f"t{evil}", effect=Effect.MUTATE_LOCAL, key=lambda i: f"k{evil}{i['n']}")
    def t(n: int, text: str) -> str:
        if n == 2:
            raise ValueError(f"boom {evil}")
        return f"out {evil}"

    deny = rule(applies_to="*", name=f"r{evil}")(
        lambda i, c: Deny(f"no {evil}") if i["n"] == 3 else True
    )
    with Runtime(url, rules=[deny]) as rt:
        for n in (1, 1, 2, 3):
            rt.execute(t, {"n": n, "text": f"in {evil}"}, correlation_id="s16")
    for args in (["events"], ["trace", "s16"], ["stats"], ["events", "--status", "failed"]):
        out = dar_cmd(*args, "--db", url)
        assert out.returncode == 0, out.stderr.decode()
        assert b"boom" in out.stdout or b"s16" in out.stdout or b"t" in out.stdout
        for control in (b"\x1b", b"\x07"):
            assert control not in out.stdout, f"`dar {args[0]}` printed a raw {control!r}"


@pytest.mark.parametrize(
    "args",
    [
        ["events", "--since", "notadate"],
        ["stats", "--since", "notadate"],
        ["purge", "--before", "notadate", "--yes"],
    ],
    ids=["events", "stats", "purge"],
)
def test_item_16_a_bad_date_is_a_one_line_error(tmp_path: Path, args: list[str]) -> None:
    """16. Bad dates in `--since`/`--before` are tracebacks; make them one-line errors."""
    url = f"sqlite:///{tmp_path / 'd.db'}"
    out = dar_cmd(*args, "--db", url)
    text = (out.stdout + out.stderr).decode()
    assert out.returncode == 2, text
    assert "Traceback" not in text
    assert len(text.strip().splitlines()) == 1 and "notadate" in text


def test_item_16_verify_on_a_mistyped_path_creates_nothing(tmp_path: Path) -> None:
    """16. `dar verify` on a mistyped path creates an empty database and reports OK."""
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
