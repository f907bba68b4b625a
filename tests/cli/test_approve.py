"""`dar approve ID --by NAME --arguments JSON`: approve with an edit from the command line.
The command opens only the store; ``--app`` brings the tools to check the edit up front,
and without it a bad edit is refused when the call uses it, running nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from dar import Runtime, Status
from tests.support.cli import cli
from tests.support.payments import app_at, paid, reset

ASKED = {"order_id": "ORD-1", "amount": 500}
APP = "tests.support.payments:app_at"


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Rich wraps at the terminal width: keep messages on one line for the assertions."""
    monkeypatch.setenv("COLUMNS", "400")
    reset()
    yield
    reset()


@pytest.fixture
def rt(shared_url: str) -> Iterator[Runtime]:
    with app_at(shared_url) as made:
        yield made


def requested(rt: Runtime) -> str:
    first = rt.call("pay", ASKED, correlation_id="pay-1")
    assert first.status == Status.AWAITING_APPROVAL and first.approval_id
    return str(first.approval_id)


def test_an_edit_from_the_command_line_runs_once_instead_of_the_request(
    rt: Runtime, shared_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    approval_id = requested(rt)
    edit = '{"order_id": "ORD-1", "amount": 80}'
    code, out = cli(["approve", approval_id, "--by", "alice", "--arguments", edit,
                     "--db", shared_url], capsys)  # fmt: skip
    assert code == 0, out
    assert "approved with an edit: pay" in out and "runs as $.amount 500 -> 80" in out
    code, out = cli(["approvals", "--db", shared_url], capsys)
    assert code == 0 and 'edited to {"amount":80,"order_id":"ORD-1"}' in out
    done = rt.call("pay", ASKED, correlation_id="pay-1")
    assert done.status == Status.EXECUTED and done.output == {"paid": "ORD-1", "amount": 80}
    assert paid == [{"order_id": "ORD-1", "amount": 80}]
    code, out = cli(["trace", "pay-1", "--db", shared_url], capsys)
    assert code == 0 and "approved by alice with an edit: $.amount 500 -> 80" in out
    code, out = cli(["verify", "--db", shared_url], capsys)
    assert code == 0, out


def test_bad_json_is_refused_before_anything_is_written(
    rt: Runtime, shared_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    approval_id = requested(rt)
    for bad in ('{"amount": 80', "[80]"):
        code, out = cli(["approve", approval_id, "--by", "alice", "--arguments", bad,
                         "--db", shared_url], capsys)  # fmt: skip
        assert code == 2 and "error:" in out and "at $" in out
    assert [a.status for a in rt.approvals()] == ["pending"] and rt.events(status="approved") == []


def test_a_schema_breaking_edit_is_refused_up_front_with_the_app(
    rt: Runtime, shared_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    approval_id = requested(rt)
    edit = json.dumps({"order_id": "ORD-1", "amount": "eighty"})
    code, out = cli(["approve", approval_id, "--by", "alice", "--arguments", edit,
                     "--app", APP, "--db", shared_url], capsys)  # fmt: skip
    assert code == 2 and "invalid arguments: $.amount" in out
    edit = json.dumps({"order_id": "ORD-1", "amount": 5000})
    code, out = cli(["approve", approval_id, "--by", "alice", "--arguments", edit,
                     "--app", APP, "--db", shared_url], capsys)  # fmt: skip
    assert code == 2 and "refused by the rule 'within_the_limits'" in out
    assert [a.status for a in rt.approvals()] == ["pending"]


def test_a_schema_breaking_edit_without_the_app_is_refused_when_used(
    rt: Runtime, shared_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    approval_id = requested(rt)
    edit = json.dumps({"order_id": "ORD-1", "amount": "eighty"})
    code, out = cli(["approve", approval_id, "--by", "alice", "--arguments", edit,
                     "--db", shared_url], capsys)  # fmt: skip
    assert code == 0, out
    refused = rt.call("pay", ASKED, correlation_id="pay-1")
    assert refused.status == Status.REJECTED and "invalid arguments: $.amount" in (
        refused.reason or ""
    )
    row = rt.events(status="rejected")[0]
    assert row.input == {"order_id": "ORD-1", "amount": "eighty"} and paid == []
