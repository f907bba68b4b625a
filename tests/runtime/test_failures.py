"""Failures: a handler's exception is recorded; the key is released for a retry, or the
failure is kept and answered from the record."""

from __future__ import annotations

from dar import (
    Effect,
    Status,
)
from tests.conftest import Clock
from tests.support.calls import Calls, MakeRuntime, make_tool


def test_failure_is_recorded_and_released(make_runtime: MakeRuntime) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_EXTERNAL, calls)
    rt = make_runtime()
    res = rt.execute(t, {"x": 1, "fail": True})
    assert res.status == Status.FAILED and res.error == "RuntimeError: boom 1"
    assert rt.execute(t, {"x": 1, "fail": True}).status == Status.FAILED
    assert calls.total == 2  # released: the retry ran again
    failed = rt.events(status="failed")
    assert len(failed) == 2 and failed[1].attempt == 2


def test_kept_failures_answer_from_the_record(make_runtime: MakeRuntime, clock: Clock) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_EXTERNAL, calls, keep_failures=True, window=30)
    rt = make_runtime(clock=clock)
    assert rt.execute(t, {"x": 1, "fail": True}).status == Status.FAILED
    res = rt.execute(t, {"x": 1, "fail": True})
    assert res.status == Status.FAILED and res.error == "RuntimeError: boom 1"
    assert calls.total == 1
    clock.advance(31)
    rt.execute(t, {"x": 1, "fail": True})
    assert calls.total == 2
