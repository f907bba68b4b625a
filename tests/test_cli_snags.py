"""The `dar` command as a newcomer meets it: `--db` anywhere, statuses checked, a missing
folder in one line, `python -m dar`, help for every command, and `dar resolve` ending the
story of the call it decides."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from dar import Effect, Runtime, Status, tool
from dar.cli.main import build_parser, main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


def test_db_before_or_after_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    assert run(["--db", url, "migrate"], capsys)[0] == 0
    assert (tmp_path / "a.db").exists()
    assert run(["--db", url, "events"], capsys)[0] == 0
    assert run(["events", "--db", url], capsys)[0] == 0
    # After the command wins over before it.
    code, out = run(["--db", url, "events", "--db", f"sqlite:///{tmp_path / 'b.db'}"], capsys)
    assert code == 2 and "no database at" in out and "b.db" in out


def test_unknown_status_is_refused_listing_the_valid_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(
        ["events", "--db", f"sqlite:///{tmp_path / 'a.db'}", "--status", "done"], capsys
    )
    assert code == 2
    assert "invalid choice: 'done'" in out and "'executed'" in out and "'cancelled'" in out


def test_a_missing_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    code, out = run(["migrate", "--db", f"sqlite:///{tmp_path / 'nope' / 'a.db'}"], capsys)
    assert code == 2 and "Traceback" not in out
    assert out.strip().splitlines() == [
        f"error: no directory {tmp_path / 'nope'} for the "
        f"database {tmp_path / 'nope' / 'a.db'} (create it first)"
    ]


def test_python_dash_m_dar() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dar", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("dar ")


def test_every_command_has_help() -> None:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert set(helps) == set(sub.choices)
    assert all(helps.values()), helps
    for name, cmd in sub.choices.items():
        for action in cmd._actions:
            assert action.help, (name, action.dest)


def test_resolve_row_joins_the_call_it_decides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    now = [1000.0]

    @tool(effect=Effect.MUTATE_EXTERNAL, lease=10)
    def ship(o: str) -> str:
        return "shipped"

    from tests.support.calls import abandon_claim

    rt = Runtime(url, clock=lambda: now[0], wait=0)
    abandon_claim(rt, ship, {"o": "A"}, correlation_id="conv-9")
    now[0] += 11
    stuck = rt.execute(ship, {"o": "A"}, correlation_id="conv-9")
    assert stuck.status == Status.INDETERMINATE and stuck.key
    assert run(["resolve", stuck.key, "--db", url, "--not-executed"], capsys)[0] == 0
    [started] = rt.events(status="started")
    [resolved] = rt.events(status="resolved")
    assert resolved.correlation_id == "conv-9"
    assert resolved.effect == "mutate-external" and resolved.call_id == started.call_id
    code, out = run(["trace", "conv-9", "--db", url], capsys)
    assert code == 0 and "RESOLVED" in out
    assert run(["verify", "--db", url], capsys)[0] == 0
    rt.close()


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
    assert "pip install 'durable-agent-runtime[postgres]'" in out.stdout
