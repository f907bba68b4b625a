"""`trace`: a session's calls as a tree in time order, in Python and from `dar trace`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from dar import (
    Runtime,
)
from dar.audit.postmortem import call_tree
from dar.cli.main import main
from tests.support.calls import MakeRuntime
from tests.support.sessions import covered, record_session


def test_trace_is_a_tree_in_time_order(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(rules=[covered])
    results = record_session(rt)
    roots = call_tree(rt.events(correlation_id="s-1"))
    assert [(n.outcome.tool_name, n.status) for n in roots] == [
        ("dispatch", "rejected"),
        ("dispatch", "executed"),
        ("send_message", "executed"),
        ("send_message", "cached"),
        ("flaky", "failed"),
    ]
    nested = roots[1].children
    assert [(c.outcome.tool_name, c.status, c.outcome.output) for c in nested] == [
        ("lookup_zone", "executed", "puno")
    ]
    assert roots[0].outcome.rule_name == "covered"
    assert roots[4].outcome.error == "TimeoutError: courier API timed out for 1"
    as_json = roots[1].as_dict()
    assert as_json["children"][0]["tool"] == "lookup_zone" and as_json["key"] == results[1].key


def test_trace_command(
    shared_runtime: Runtime, shared_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    record_session(shared_runtime)
    assert main(["trace", "s-1", "--db", shared_url]) == 0
    out = capsys.readouterr().out
    assert "REJECTED" in out and "no courier covers Yunguyo" in out and "lookup_zone" in out
    assert main(["trace", "s-1", "--db", shared_url, "--json"]) == 0
    tree = json.loads(capsys.readouterr().out)
    assert tree[1]["children"][0]["tool"] == "lookup_zone"
    assert main(["trace", "nope", "--db", shared_url]) == 1


@pytest.fixture
def shared_runtime(shared_url: str) -> Iterator[Runtime]:
    """A runtime on a database the `dar` command can open too."""
    with Runtime(shared_url, rules=[covered]) as rt:
        yield rt


def test_trace_lists_a_search_with_its_tree_and_the_chosen_path(
    file_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.couriers import World, propose, score

    with World().runtime(file_url) as rt:
        found = rt.speculate("conv-s", propose=propose, score=score, budget=16)
        rt.commit_all(found.best)
    assert main(["trace", "conv-s", "--db", file_url]) == 0
    out = capsys.readouterr().out
    assert "search SPECULATED" in out and "chose 2 plan(s)" in out
    chosen = [line for line in out.splitlines() if line.lstrip("│ └├─").startswith("* ")]
    assert [line.split("*", 1)[1].split()[0] for line in chosen] == [
        "quote_couriers", "book_courier", "notify_customer",
    ]  # fmt: skip
    assert "REJECTED" in out and "visits" in out
