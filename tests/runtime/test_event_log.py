"""The event log: append-only, filtered by session, tool, status and time, and nested calls
linked to the call that made them."""

from __future__ import annotations

from typing import Any

import pytest

import dar
from dar import (
    Effect,
    tool,
)
from tests.conftest import Clock, execute_sql
from tests.support.calls import Calls, MakeRuntime, make_tool, statuses


def test_nested_calls_link_to_their_parent(make_runtime: MakeRuntime, runtime_kind: str) -> None:
    rt = make_runtime()

    @tool(effect=Effect.READ)
    def lookup_zone(town: str) -> str:
        return "yunguyo"

    if runtime_kind == "sync":

        @tool(effect=Effect.MUTATE_EXTERNAL)
        def dispatch(order: str) -> dict[str, Any]:
            zone = rt.execute(lookup_zone, {"town": "x"}).output
            return {"order": order, "zone": zone}

    else:  # on an AsyncRuntime, the handler awaits the nested call

        @tool(effect=Effect.MUTATE_EXTERNAL)
        async def dispatch(order: str) -> dict[str, Any]:
            zone = (await rt.art.execute(lookup_zone, {"town": "x"})).output  # type: ignore[attr-defined]
            return {"order": order, "zone": zone}

    res = rt.execute(dispatch, {"order": "o1"}, correlation_id="sess")
    assert res.output == {"order": "o1", "zone": "yunguyo"}
    events = rt.events(correlation_id="sess")
    assert [(e.tool_name, e.status) for e in events] == [
        ("dispatch", "started"),
        ("lookup_zone", "executed"),
        ("dispatch", "executed"),
    ]
    started, child, _ = events
    assert child.parent_event_id == started.event_id
    assert started.parent_event_id is None


def test_event_log_is_append_only(make_runtime: MakeRuntime) -> None:
    calls = Calls()
    rt = make_runtime()
    rt.execute(make_tool(Effect.MUTATE_LOCAL, calls), {"x": 1})
    for sql in (
        "UPDATE agent_tool_events SET status = 'executed'",
        "DELETE FROM agent_tool_events",
    ):
        with pytest.raises(Exception, match="append-only"):
            execute_sql(rt.store, sql)
    assert statuses(rt) == ["started", "executed"]


def test_events_filters(make_runtime: MakeRuntime, clock: Clock) -> None:
    import datetime as dt

    calls = Calls()
    a = make_tool(Effect.READ, calls, name="a")
    b = make_tool(Effect.MUTATE_LOCAL, calls, name="b")
    rt = make_runtime(clock=clock)
    rt.execute(a, {"x": 1}, correlation_id="s1")
    clock.advance(100)
    rt.execute(b, {"x": 1}, correlation_id="s2")
    assert [e.tool_name for e in rt.events(correlation_id="s2")] == ["b", "b"]
    assert len(rt.events(tool="a")) == 1
    assert len(rt.events(status="started")) == 1
    since = dt.datetime.fromtimestamp(clock.now - 50, tz=dt.timezone.utc)
    assert {e.tool_name for e in rt.events(since=since)} == {"b"}
    assert len(rt.events(limit=2)) == 2
    ev = rt.events(tool="b", status="executed")[0]
    assert ev.created_at.tzinfo is not None and ev.duration_ms is not None
    assert ev.idempotency_key == f"b:{dar.input_hash({'x': 1})}"
