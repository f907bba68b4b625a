"""`stats`: counts per tool and status, in Python and from `dar stats` (with `dar verify`)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from dar import (
    Effect,
    Runtime,
    Status,
    tool,
)
from dar.audit.postmortem import stats
from dar.cli.main import main
from tests.conftest import Clock
from tests.support.calls import MakeRuntime, abandon_claim
from tests.support.sessions import covered, record_session


@pytest.fixture
def shared_runtime(shared_url: str) -> Iterator[Runtime]:
    """A runtime on a database the `dar` command can open too."""
    with Runtime(shared_url, rules=[covered]) as rt:
        yield rt


def test_stats(make_runtime: MakeRuntime, clock: Clock) -> None:
    rt = make_runtime(rules=[covered], clock=clock, wait=0)
    record_session(rt)
    ext = tool(name="ship", effect=Effect.MUTATE_EXTERNAL, lease=10)(lambda n: n)
    abandon_claim(rt, ext, {"n": 9})
    clock.advance(11)
    assert rt.execute(ext, {"n": 9}).status == Status.INDETERMINATE
    report = stats(rt.events())
    by_tool = {t.tool: t for t in report.tools}
    assert by_tool["send_message"].statuses == {"executed": 1, "cached": 1}
    assert by_tool["send_message"].duplicates_absorbed == 1
    assert by_tool["dispatch"].statuses == {"executed": 1, "rejected": 1}
    assert report.refusals == {"covered": {"no courier covers Yunguyo": 1}}
    assert report.refusal_sessions == {"covered": ["s-1"]}
    assert report.failures == {"TimeoutError: courier API timed out for 1": 1}
    assert report.indeterminate_keys == [f"ship:{rt.events(tool='ship')[0].input_hash}"]
    assert by_tool["dispatch"].p50_ms is not None and by_tool["dispatch"].p99_ms is not None


def test_stats_and_verify_commands(
    shared_runtime: Runtime, shared_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    record_session(shared_runtime)
    assert main(["stats", "--db", shared_url]) == 0
    out = capsys.readouterr().out
    assert "covered" in out and "no courier covers Yunguyo" in out and "s-1" in out
    assert main(["stats", "--db", shared_url, "--json", "--since", "2000-01-01"]) == 0
    assert json.loads(capsys.readouterr().out)["refusals"] == {
        "covered": {"no courier covers Yunguyo": 1}
    }
    assert main(["verify", "--db", shared_url]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["verify", "s-1", "--db", shared_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
