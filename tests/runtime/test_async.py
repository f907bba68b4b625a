"""AsyncRuntime: the same decision core, with coroutine handlers and rules."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest

from dar import AsyncRuntime, Deny, Effect, RuleContext, Status, Tool, rule, tool
from dar.runtime.execute import STORE_ON_LOOP


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def slow_charge(runs: Counter[int]) -> Tool[Any]:
    """A charge that takes a while, counting its runs: duplicates arrive while it runs."""

    @tool(effect=Effect.MUTATE_EXTERNAL)
    async def charge(n: int) -> dict[str, int]:
        runs[n] += 1
        await asyncio.sleep(0.05)
        return {"charged": n}

    return charge


def test_async_handlers_execute_once_under_gather(store_url: str) -> None:
    runs: Counter[int] = Counter()
    charge = slow_charge(runs)

    async def main() -> list[Any]:
        async with AsyncRuntime(store_url) as rt:
            results = await asyncio.gather(*(rt.execute(charge, {"n": 1}) for _ in range(10)))
            log = Counter(e.status for e in await rt.events())
        return [results, log]

    results, log = run(main())
    assert runs == {1: 1}
    assert Counter(r.status for r in results) == {Status.EXECUTED: 1, Status.CACHED: 9}
    assert all(r.output == {"charged": 1} for r in results)
    assert log == {"started": 1, "executed": 1, "cached": 9}


def store_threads() -> set[threading.Thread]:
    """The async runtimes' worker threads alive now (the objects: an ident is reused)."""
    return {t for t in threading.enumerate() if t.name.startswith("dar-store")}


@pytest.mark.parametrize("on_loop", [False, True])
def test_store_operations_run_on_the_loop_under_store_on_loop(
    store_url: str, on_loop: bool
) -> None:
    """Under `STORE_ON_LOOP` (the MCP proxy's stdio loop, which serves one agent) the
    store operations run on the loop itself, in no worker thread; concurrent duplicates
    still run the handler once and wait for its outcome."""
    runs: Counter[int] = Counter()
    charge = slow_charge(runs)

    async def main() -> tuple[list[Any], set[threading.Thread]]:
        if on_loop:
            STORE_ON_LOOP.set(True)
        before = store_threads()
        async with AsyncRuntime(store_url) as rt:
            results = await asyncio.gather(*(rt.execute(charge, {"n": 1}) for _ in range(5)))
            started = store_threads() - before
        return results, started

    results, started = run(main())
    assert runs == {1: 1}
    assert Counter(r.status for r in results) == {Status.EXECUTED: 1, Status.CACHED: 4}
    assert (not started) if on_loop else started


def test_async_rules_read_the_log(store_url: str) -> None:
    @tool(effect=Effect.MUTATE_EXTERNAL)
    async def send(to: str) -> str:
        return to

    @rule(applies_to="send")
    async def no_competitors(inp: dict[str, Any], ctx: RuleContext) -> Deny | bool:
        sent = await ctx.events(tool="send", status="executed")
        return Deny("only one message") if sent else True

    @rule(applies_to="send", timeout=0.05)
    async def slow(inp: dict[str, Any], ctx: RuleContext) -> bool:
        if inp["to"] == "slow":
            await asyncio.sleep(10)
        return True

    async def main() -> list[Any]:
        async with AsyncRuntime(store_url, rules=[no_competitors, slow]) as rt:
            return [await rt.execute(send, {"to": t}) for t in ("a", "b", "slow")]

    a, b, slow_res = run(main())
    assert a.status == Status.EXECUTED
    assert (b.status, b.rule, b.reason) == (Status.REJECTED, "no_competitors", "only one message")
    # Rules run in order and stop at the first refusal: `slow` never ran here.
    assert (slow_res.status, slow_res.rule) == (Status.REJECTED, "no_competitors")


def test_async_rule_timeout_cancels(store_url: str) -> None:
    cancelled = []

    @tool(effect=Effect.READ)
    async def look(q: str) -> str:
        return q

    @rule(applies_to="*", timeout=0.05)
    async def slow(inp: dict[str, Any], ctx: RuleContext) -> bool:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return True

    async def main() -> Any:
        async with AsyncRuntime(store_url, rules=[slow]) as rt:
            return await rt.execute(look, {"q": "x"})

    res = run(main())
    assert res.status == Status.REJECTED and "timed out" in (res.reason or "")
    assert cancelled == [True]


def test_async_nesting_and_bad_input(store_url: str) -> None:
    @tool(effect=Effect.READ)
    async def inner(x: int) -> int:
        return x * 2

    async def main() -> Any:
        async with AsyncRuntime(store_url) as rt:

            @tool(effect=Effect.MUTATE_LOCAL)
            async def outer(x: int) -> int:
                inner_out: int = (await rt.execute(inner, {"x": x})).output
                return inner_out + 1

            res = await rt.execute(outer, {"x": 20}, correlation_id="c")
            bad = await rt.execute(outer, {"x": float("inf")}, correlation_id="c")
            return res, bad, await rt.events(correlation_id="c")

    res, bad, events = run(main())
    assert res.output == 41
    assert bad.status == Status.REJECTED and bad.reason.startswith("at $.x: ")
    assert [(e.tool_name, e.status) for e in events] == [
        ("outer", "started"),
        ("inner", "executed"),
        ("outer", "executed"),
        ("outer", "rejected"),
    ]
    assert events[1].parent_event_id == events[0].event_id


def test_sync_runtime_refuses_async_code(store_url: str) -> None:
    from dar import Runtime

    @tool(effect=Effect.READ)
    async def coro(x: int) -> int:
        return x

    r = rule(applies_to="*", name="async_rule")(lambda i, c: asyncio.sleep(0))
    with Runtime(store_url) as rt:
        res = rt.execute(coro, {"x": 1})
    assert res.status == Status.FAILED and "use AsyncRuntime" in (res.error or "")
    with Runtime(store_url, rules=[r]) as rt:
        res = rt.execute(coro, {"x": 1})
    assert res.status == Status.REJECTED and "use AsyncRuntime" in (res.reason or "")


@pytest.mark.parametrize("effect", [Effect.MUTATE_LOCAL])
def test_async_failure_releases(store_url: str, effect: Effect) -> None:
    runs = []

    @tool(effect=effect)
    async def flaky(n: int) -> int:
        runs.append(n)
        if len(runs) == 1:
            raise ConnectionError("courier API down")
        return n

    async def main() -> list[Any]:
        async with AsyncRuntime(store_url) as rt:
            return [await rt.execute(flaky, {"n": 1}) for _ in range(3)]

    first, second, third = run(main())
    assert (first.status, first.error) == (Status.FAILED, "ConnectionError: courier API down")
    assert (second.status, third.status) == (Status.EXECUTED, Status.CACHED)
    assert len(runs) == 2
