"""Outputs: what a handler returns is recorded (or the record says why it could not be), on
every store, even where the database cannot store the value as it is."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from dar import (
    Effect,
    Runtime,
    Status,
    tool,
)
from tests.support.calls import MakeRuntime


def test_output_that_is_not_json_is_still_recorded_as_done(make_runtime: MakeRuntime) -> None:
    runs = []

    lock = threading.Lock()

    @tool(effect=Effect.MUTATE_EXTERNAL)
    def returns_a_lock() -> Any:
        runs.append(1)
        return {"lock": lock}

    rt = make_runtime()
    first = rt.execute(returns_a_lock, {})
    assert first.status == Status.EXECUTED and first.output == {"lock": lock}
    assert "output not recorded" in (first.error or "")
    again = rt.execute(returns_a_lock, {})
    assert again.status == Status.CACHED and again.output is None
    # Never a silent None: the answer from the record says why it has no output.
    assert "output not recorded" in (again.reason or "")
    assert "could not be recorded" in again.for_model().text
    assert len(runs) == 1


def test_an_output_with_a_nul_character_is_recorded(store_url: str) -> None:
    """Found by the airtight review: outputs and errors Postgres cannot store (a NUL character in an
    output or error text, an over-long key) make `execute` raise after the handler ran."""
    ran: list[str] = []

    @tool(effect=Effect.MUTATE_LOCAL, lease=300)
    def render(n: int) -> dict[str, str]:
        ran.append("render")
        return {"text": "before\u0000after"}

    with Runtime(store_url, wait=0.5) as rt:
        first = rt.execute(render, {"n": 1})
        assert first.status == Status.EXECUTED
        again = rt.execute(render, {"n": 1})
        assert again.status == Status.CACHED, f"outcome lost: {again.status}"
        assert ran == ["render"]
        assert [e.status for e in rt.events()] == ["started", "executed", "cached"]


def test_an_error_with_a_nul_character_is_recorded(store_url: str) -> None:
    """Found by the airtight review: a NUL character in an error text made `execute` raise after the
    handler ran."""

    @tool(effect=Effect.MUTATE_LOCAL)
    def parse(n: int) -> str:
        raise ValueError("bad byte \x00 in record")

    with Runtime(store_url, wait=0.5) as rt:
        res = rt.execute(parse, {"n": 1})
        assert res.status == Status.FAILED and res.error
        assert [e.status for e in rt.events()] == ["started", "failed"]


def test_nan_is_not_recorded_as_null_when_the_output_needs_conversion() -> None:
    @tool(effect=Effect.MUTATE_LOCAL)
    def report(n: int) -> dict[str, Any]:
        return {"total": float("nan"), "at": dt.date(2026, 1, 1)}

    with Runtime("sqlite://:memory:", tools=[report]) as rt:
        first = rt.call("report", {"n": 1})
        assert "output not recorded" in (first.error or "") and "NaN" in (first.error or "")
