"""The `dar` command."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from dar import Effect, Runtime, Status, tool
from dar.cli.main import main
from dar.demo.incidents import run_demo


def test_demo_figures(tmp_path: Path) -> None:
    figures = run_demo(tmp_path / "demo.db", Console(file=io.StringIO()))
    assert figures["imports_without"] == 551
    assert figures["imports_with"] == 29
    assert figures["dispatch_Yunguyo"] == "rejected"
    assert figures["dispatch_Juliaca"] == "executed"
    assert figures["message_Llama Market"] == "rejected"
    assert figures["message_Alpaca Textiles"] == "executed"
    assert figures["payments_with"] == [125000]  # approved, then confirmed once
    assert figures["session_events"] == 13
    assert figures["saga_state"] == "compensated"
    assert figures["saga_cancellations"] == 1  # killed mid-rollback, cancelled exactly once


def test_migrate_and_events_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["migrate", "--db", url]) == 0
    assert "0001_init.sql" in capsys.readouterr().out
    assert main(["migrate", "--db", url]) == 0
    assert "up to date" in capsys.readouterr().out

    @tool(effect=Effect.MUTATE_LOCAL)
    def note(text: str) -> str:
        return text

    Runtime(url).execute(note, {"text": "hi"}, correlation_id="s9")
    assert main(["events", "--db", url, "--correlation-id", "s9", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["status"] for r in rows] == ["started", "executed"]
    assert rows[1]["output"] == "hi" and rows[1]["input"] == {"text": "hi"}
    assert main(["events", "--db", url, "--status", "executed"]) == 0
    assert "note" in capsys.readouterr().out


def test_resolve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    now = [1000.0]

    @tool(effect=Effect.MUTATE_EXTERNAL, lease=10, key=lambda i: f"ship:{i['o']}")
    def ship(o: str) -> str:
        return "shipped"

    from tests.support.calls import abandon_claim

    rt = Runtime(url, clock=lambda: now[0], wait=0)
    abandon_claim(rt, ship, {"o": "A"})
    now[0] += 11
    stuck = rt.execute(ship, {"o": "A"})
    assert stuck.status == Status.INDETERMINATE and stuck.key is not None
    key = stuck.key  # as `dar events --status indeterminate` lists it
    assert main(["resolve", key, "--db", url, "--executed", "--output", '{"t": 1}']) == 0
    assert "indeterminate -> done" in capsys.readouterr().out
    res = rt.execute(ship, {"o": "A"})
    assert (res.status, res.output) == (Status.CACHED, {"t": 1})
    assert main(["resolve", key, "--db", url, "--not-executed"]) == 1
    assert main(["resolve", "nope", "--db", url, "--executed"]) == 1
    assert main(["resolve", key, "--db", url, "--executed", "--output", "{bad"]) == 2


def test_env_database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAR_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert main(["migrate"]) == 0
    assert (tmp_path / "env.db").exists()


def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dar.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("dar ")
    bad = subprocess.run(
        [sys.executable, "-m", "dar.cli", "events", "--db", "mysql://x"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "unknown database URL" in bad.stdout


def test_agent_demo_through_the_openai_sdk() -> None:
    from dar.demo.incidents import run_agent_demo

    figures = run_agent_demo(Console(file=io.StringIO()))
    assert figures["without dar"] == (2, 1)  # dispatched twice, one wrong-brand message
    assert figures["with dar"] == (1, 0)
