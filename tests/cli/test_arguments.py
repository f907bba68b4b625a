"""The `dar` command line: `--db` anywhere (or from the environment), statuses and dates
checked with one-line errors, a missing folder in one line, help for every option."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from dar import Effect, Runtime, tool
from dar.cli.main import build_parser, main
from tests.support.cli import cli, dar_cmd


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps at the terminal width: keep messages on one line for the assertions."""
    monkeypatch.setenv("COLUMNS", "400")


@pytest.mark.parametrize(
    "args",
    [
        ["events", "--since", "notadate"],
        ["stats", "--since", "notadate"],
        ["purge", "--before", "notadate", "--yes"],
    ],
    ids=["events", "stats", "purge"],
)
def test_a_bad_date_is_a_one_line_error(tmp_path: Path, args: list[str]) -> None:
    """Found by the airtight review: bad dates in `--since`/`--before` are tracebacks; make them
    one-line errors."""
    url = f"sqlite:///{tmp_path / 'd.db'}"
    out = dar_cmd(*args, "--db", url)
    text = (out.stdout + out.stderr).decode()
    assert out.returncode == 2, text
    assert "Traceback" not in text
    assert len(text.strip().splitlines()) == 1 and "notadate" in text


def test_db_before_or_after_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    assert cli(["--db", url, "migrate"], capsys)[0] == 0
    assert (tmp_path / "a.db").exists()
    assert cli(["--db", url, "events"], capsys)[0] == 0
    assert cli(["events", "--db", url], capsys)[0] == 0
    # After the command wins over before it.
    code, out = cli(["--db", url, "events", "--db", f"sqlite:///{tmp_path / 'b.db'}"], capsys)
    assert code == 2 and "no database at" in out and "b.db" in out


def test_unknown_status_is_refused_listing_the_valid_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = cli(
        ["events", "--db", f"sqlite:///{tmp_path / 'a.db'}", "--status", "done"], capsys
    )
    assert code == 2
    assert "invalid choice: 'done'" in out and "'executed'" in out and "'cancelled'" in out


def test_a_missing_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    code, out = cli(["migrate", "--db", f"sqlite:///{tmp_path / 'nope' / 'a.db'}"], capsys)
    assert code == 2 and "Traceback" not in out
    assert out.strip().splitlines() == [
        f"error: no directory {tmp_path / 'nope'} for the "
        f"database {tmp_path / 'nope' / 'a.db'} (create it first)"
    ]


def test_every_command_has_help() -> None:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert set(helps) == set(sub.choices)
    assert all(helps.values()), helps
    for name, cmd in sub.choices.items():
        for action in cmd._actions:
            assert action.help, (name, action.dest)


def test_env_database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAR_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert main(["migrate"]) == 0
    assert (tmp_path / "env.db").exists()


def test_a_bad_number_in_the_database_url_is_one_line(tmp_path: Path) -> None:
    # `--db 'sqlite:///x.db?busy_timeout=abc'` once raised a bare ValueError.
    url = f"sqlite:///{tmp_path / 'x.db'}"
    Runtime(url).close()
    done = dar_cmd("events", "--db", f"{url}?busy_timeout=abc")
    said = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in said
    assert "busy_timeout='abc' must be a number of seconds" in said


def test_a_negative_limit_is_refused_before_the_database_sees_it(pg_url: str) -> None:
    # `dar events --limit -1` on Postgres once ended in a traceback.
    Runtime(pg_url).close()
    done = dar_cmd("events", "--limit", "-1", "--db", pg_url)
    said = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in said
    assert "expected a whole number >= 0, got '-1'" in said


def test_approve_refuses_an_infinite_ttl_before_writing(tmp_path: Path) -> None:
    # `dar approve --ttl inf` once wrote a grant that never expired, then crashed.
    url = f"sqlite:///{tmp_path / 'ttl.db'}"

    @tool(effect=Effect.MUTATE_EXTERNAL, approval=True)
    def pay(amount: int) -> int:
        return amount

    rt = Runtime(url, tools=[pay])
    asked = rt.call("pay", {"amount": 1})
    assert asked.approval_id is not None
    done = dar_cmd("approve", asked.approval_id, "--by", "a", "--ttl", "inf", "--db", url)
    said = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in said
    assert "ttl must be positive seconds" in said
    assert [x.status for x in rt.approvals()] == ["pending"]
    rt.close()
