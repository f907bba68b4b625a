"""Crash recovery: a claim whose worker died with no outcome runs again (local effects),
becomes indeterminate (external ones), is reconciled, or is resolved by an operator."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import dar
from dar import (
    Effect,
    Reconciled,
    Runtime,
    Status,
    tool,
)
from dar.core.ops import GetClaim, Resolve
from dar.core.rows import resolved_row
from dar.records import NewEvent
from tests.conftest import Clock
from tests.support.calls import Calls, MakeRuntime, abandon_claim, allow_all, make_tool, wait_until


def ev_of(rt: Runtime) -> NewEvent:
    """Any row to hand a store operation that must fail before writing it."""
    e = rt.events()[0]
    return NewEvent(e.event_id, e.tool_name, e.effect, e.status, 0.0)


def test_crashed_local_calls_run_again_after_the_lease(
    make_runtime: MakeRuntime, clock: Clock
) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_LOCAL, calls, lease=30)
    rt = make_runtime(clock=clock, wait=0)
    abandon_claim(rt, t, {"x": 1})
    assert rt.execute(t, {"x": 1}).status == Status.IN_PROGRESS
    clock.advance(31)
    res = rt.execute(t, {"x": 1})
    assert res.status == Status.EXECUTED and calls.total == 1
    assert rt.events(status="started")[-1].attempt == 2


@pytest.mark.parametrize("effect", [Effect.MUTATE_EXTERNAL, Effect.IRREVERSIBLE])
def test_crashed_external_calls_become_indeterminate(
    make_runtime: MakeRuntime, clock: Clock, effect: Effect
) -> None:
    calls = Calls()
    t = make_tool(effect, calls, lease=30)
    rt = make_runtime(clock=clock, wait=0, rules=[allow_all])
    abandon_claim(rt, t, {"x": 1})
    clock.advance(31)
    res = rt.execute(t, {"x": 1})
    assert res.status == Status.INDETERMINATE
    assert rt.execute(t, {"x": 1}).status == Status.INDETERMINATE
    assert calls.total == 0
    key = res.key
    assert key is not None and rt.store.get_claim(GetClaim(key)).state == "indeterminate"  # type: ignore[union-attr]


def resolve(rt: Runtime, key: str, executed: bool, output: Any = None) -> None:
    claim = rt.store.get_claim(GetClaim(key))
    assert claim is not None
    out = None if output is None else dar.canonical_json(output).decode()
    ev = resolved_row(claim, executed, out, None, rt.clock())
    rt.store.resolve(Resolve(key, executed, out, rt.clock(), ev))


def test_operator_resolves_indeterminate_calls(make_runtime: MakeRuntime, clock: Clock) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_EXTERNAL, calls, lease=30)
    rt = make_runtime(clock=clock, wait=0)
    abandon_claim(rt, t, {"x": 1})
    abandon_claim(rt, t, {"x": 2})
    clock.advance(31)
    k1 = rt.execute(t, {"x": 1}).key
    k2 = rt.execute(t, {"x": 2}).key
    assert k1 and k2
    resolve(rt, k1, executed=True, output={"shipped": True})
    assert rt.execute(t, {"x": 1}).output == {"shipped": True}
    resolve(rt, k2, executed=False)
    assert rt.execute(t, {"x": 2}).status == Status.EXECUTED
    assert calls.total == 1
    with pytest.raises(ValueError):
        resolve(rt, k1, executed=False)  # done is done
    assert rt.store.get_claim(GetClaim("nope")) is None
    with pytest.raises(KeyError):
        rt.store.resolve(Resolve("nope", True, None, 0.0, ev_of(rt)))


def test_reconcile_decides_after_a_crash(make_runtime: MakeRuntime, clock: Clock) -> None:
    calls = Calls()
    shipped = {"1": {"tracking": "T1"}}

    def reconcile(inp: dict[str, Any]) -> Reconciled:
        found = shipped.get(str(inp["x"]))
        return Reconciled(True, found) if found else Reconciled(False)

    t = make_tool(Effect.MUTATE_EXTERNAL, calls, lease=30, reconcile=reconcile)
    rt = make_runtime(clock=clock, wait=0)
    abandon_claim(rt, t, {"x": 1})
    abandon_claim(rt, t, {"x": 2})
    clock.advance(31)
    r1 = rt.execute(t, {"x": 1})
    assert (r1.status, r1.output, r1.extra) == (
        Status.CACHED,
        {"tracking": "T1"},
        {"reconciled": True},
    )
    assert rt.execute(t, {"x": 1}).output == {"tracking": "T1"}
    r2 = rt.execute(t, {"x": 2})
    assert r2.status == Status.EXECUTED and calls.total == 1


def test_reconcile_that_fails_leaves_it_indeterminate(
    make_runtime: MakeRuntime, clock: Clock
) -> None:
    calls = Calls()
    t = make_tool(Effect.IRREVERSIBLE, calls, lease=30, reconcile=lambda inp: 1 / 0)
    rt = make_runtime(clock=clock, wait=0, rules=[allow_all])
    abandon_claim(rt, t, {"x": 1})
    clock.advance(31)
    res = rt.execute(t, {"x": 1})
    assert res.status == Status.INDETERMINATE and "ZeroDivisionError" in (res.error or "")
    assert rt.execute(t, {"x": 1}).status == Status.INDETERMINATE
    assert calls.total == 0


def test_store_resolve_refuses_a_running_claim_with_a_live_lease(
    make_runtime: MakeRuntime, runtime_kind: str
) -> None:
    """Found by the airtight review: `dar resolve --not-executed` releases a claim that is still
    running with a live lease."""
    release = threading.Event()
    ran: list[str] = []

    def wire_sync(n: int) -> str:
        ran.append("wire")
        release.wait(30)
        return "sent"

    async def wire_async(n: int) -> str:  # an async runtime's loop must not be blocked
        ran.append("wire")
        await asyncio.to_thread(release.wait, 30)
        return "sent"

    wire = tool(name="wire", effect=Effect.IRREVERSIBLE, key=lambda i: f"wire:{i['n']}")(
        wire_sync if runtime_kind == "sync" else wire_async
    )

    rt = make_runtime(rules=[allow_all])
    worker = threading.Thread(target=rt.execute, args=(wire, {"n": 1}))
    worker.start()
    try:
        wait_until(lambda: ran == ["wire"])
        key = next(e.idempotency_key for e in rt.events(status="started"))
        assert key is not None
        claim = rt.store.get_claim(GetClaim(key))
        assert claim is not None and claim.state == "running"
        now = time.time()
        event = resolved_row(claim, False, None, None, now)
        with pytest.raises(ValueError, match=r"lease|running") as info:
            rt.store.resolve(Resolve(key, False, None, now, event))
        assert claim.owner is not None and claim.owner in str(info.value)
        assert rt.store.get_claim(GetClaim(key)).state == "running"  # type: ignore[union-attr]
    finally:
        release.set()
        worker.join(30)
