"""`dar migrate` and `dar events` (as JSON lines and as a table)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dar import Effect, Runtime, tool
from dar.cli.main import main


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
