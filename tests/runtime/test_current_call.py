"""`dar.current_call()`: inside a handler (sync or async, on either runtime, in a saga's step,
with or without a timeout) and inside ``reconcile``, the call's key to forward, its row, its
session and its attempt; None anywhere else. The key is the same on every attempt of one
call, and differs between calls, tools and databases."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import dar
from dar import AsyncRuntime, CallInfo, Effect, Reconciled, Runtime, Status, tool
from tests.conftest import Clock
from tests.support.calls import MakeRuntime, abandon_claim, allow_all

seen: list[CallInfo | None] = []


@pytest.fixture(autouse=True)
def _forget() -> None:
    seen.clear()


def note(n: int) -> int:
    seen.append(dar.current_call())
    return n


def the_call() -> CallInfo:
    """The one call the handlers saw."""
    [info] = seen
    assert info is not None
    return info


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["no timeout", "in a thread"])
def test_a_handler_sees_its_call(make_runtime: MakeRuntime, timeout: float | None) -> None:
    charge = tool(name="charge", effect=Effect.MUTATE_EXTERNAL, timeout=timeout)(note)
    rt = make_runtime(tools=[charge])
    assert dar.current_call() is None
    with dar.session("conv-1"):
        first = rt.call("charge", {"n": 1})
        again = rt.call("charge", {"n": 1})
    assert (first.status, again.status) == (Status.EXECUTED, Status.CACHED)
    info = the_call()  # the cached call ran nothing
    [started] = rt.events(status="started")
    assert info == CallInfo(info.key, started.event_id, "conv-1", 1, "charge")
    assert info.key is not None and info.key.startswith("dar-") and len(info.key) == 36
    assert info.key != first.key  # not the stored key: it would tell the provider the input
    assert dar.current_call() is None


def test_a_coroutine_handler_sees_its_call(store_url: str) -> None:
    @tool(effect=Effect.MUTATE_LOCAL, timeout=5)
    async def remember(n: int) -> int:
        await asyncio.sleep(0)
        return note(n)

    async def main() -> None:
        async with AsyncRuntime(store_url, tools=[remember]) as art:
            done = await art.call("remember", {"n": 1}, correlation_id="c-2")
            assert done.status == Status.EXECUTED
            [started] = await art.events(status="started")
            assert the_call() == CallInfo(the_call().key, started.event_id, "c-2", 1, "remember")

    asyncio.run(main())


def test_a_read_has_no_key(make_runtime: MakeRuntime) -> None:
    look = tool(name="look", effect=Effect.READ)(note)
    rt = make_runtime(tools=[look])
    done = rt.call("look", {"n": 1})
    assert done.event_id is not None  # a read's one row is its call's first
    assert the_call() == CallInfo(None, done.event_id, None, 1, "look")


def test_every_attempt_of_one_call_sees_one_key(make_runtime: MakeRuntime) -> None:
    @tool(effect=Effect.MUTATE_EXTERNAL)
    def pay(n: int) -> int:
        seen.append(dar.current_call())
        if len(seen) == 1:
            raise RuntimeError("provider unreachable")
        return n

    @tool(effect=Effect.MUTATE_EXTERNAL)
    def refund(n: int) -> int:
        return note(n)

    rt = make_runtime(tools=[pay, refund])
    assert rt.call("pay", {"n": 1}).status == Status.FAILED  # released: the retry runs
    assert rt.call("pay", {"n": 1}).status == Status.EXECUTED
    rt.call("pay", {"n": 2})
    rt.call("refund", {"n": 1})
    rt.call("pay", {"n": 3}, key="order-3")
    first, retry, other, refunded, given = seen
    assert first is not None and retry is not None
    assert (first.key, first.attempt) == (retry.key, 1) and retry.attempt == 2
    keys = {first.key, *(c.key for c in (other, refunded, given) if c is not None)}
    assert len(keys) == 4  # another input, another tool, a given key: another key each


def test_reconcile_and_the_rerun_after_a_crash_see_the_same_call(
    make_runtime: MakeRuntime, clock: Clock
) -> None:
    def reconcile(inp: dict[str, Any]) -> Reconciled:
        seen.append(dar.current_call())
        return Reconciled(executed=False)  # so the handler runs now

    ship = tool(name="ship", effect=Effect.IRREVERSIBLE, lease=30, reconcile=reconcile)(note)
    rt = make_runtime(clock=clock, rules=[allow_all], tools=[ship])
    abandon_claim(rt, ship, {"n": 1})
    clock.advance(31)
    assert rt.call("ship", {"n": 1}).status == Status.EXECUTED
    asked, ran = seen
    assert asked == ran and ran is not None and ran.attempt == 2


def test_a_saga_step_sees_its_own_key(make_runtime: MakeRuntime) -> None:
    undo = tool(name="undo", effect=Effect.MUTATE_EXTERNAL)(note)
    book = tool(name="book", effect=Effect.MUTATE_EXTERNAL, compensate=undo)(note)
    rt = make_runtime(tools=[book])
    with rt.saga("trip-1", correlation_id="trip") as saga:
        saga.call("book", {"n": 1})
    rt.call("book", {"n": 1})  # the same input outside the saga is another call
    step, plain = seen
    assert step is not None and plain is not None
    assert (step.tool, step.correlation_id, step.attempt) == ("book", "trip", 1)
    assert step.key is not None and step.key != plain.key


class Died(BaseException):
    """The worker dies here (no outcome recorded by the caller)."""


def test_saga_recovery_asks_reconcile_with_the_steps_call(
    make_runtime: MakeRuntime, clock: Clock
) -> None:
    def reconcile(inp: dict[str, Any]) -> Reconciled:
        seen.append(dar.current_call())
        return Reconciled(executed=True, output=inp["n"])

    undo = tool(name="undo", effect=Effect.MUTATE_EXTERNAL)(lambda n: n)

    @tool(effect=Effect.MUTATE_EXTERNAL, compensate=undo, reconcile=reconcile, lease=60)
    def ship(n: int) -> int:
        seen.append(dar.current_call())
        raise Died

    worker = make_runtime(tools=[ship], clock=clock)
    with pytest.raises(Died), worker.saga("s-1", correlation_id="trip") as saga:
        saga.call("ship", {"n": 1})
    clock.advance(400)
    assert worker.recover_sagas() == ["s-1"]
    ran, asked = seen
    assert ran is not None and asked == ran and ran.correlation_id == "trip"


def test_another_database_sends_another_key(tmp_path: Path) -> None:
    charge = tool(name="charge", effect=Effect.MUTATE_EXTERNAL)(note)
    for name in ("staging.db", "production.db"):
        with Runtime(f"sqlite:///{tmp_path / name}", tools=[charge]) as rt:
            rt.call("charge", {"n": 1})
    staging, production = seen
    assert staging is not None and production is not None and staging.key != production.key
