"""`tool(timeout=...)`: a handler still running at its timeout makes a `read` fail (it may
run again) and every other effect `indeterminate` (never run again blindly: its key waits
for `reconcile` or an operator), on both runtimes, with sync and async handlers; a sync
handler's thread runs on, and its late outcome is never recorded."""

from __future__ import annotations

import _thread
import asyncio
import math
import threading
from typing import Any

import pytest

import dar
from dar import (
    AsyncRuntime,
    ConfigurationError,
    Effect,
    Reconciled,
    Runtime,
    Status,
    Tool,
    tool,
)
from dar.core.ops import GetClaim
from tests.support.calls import MakeRuntime, allow_all
from tests.support.runtimes import make

TIMEOUT = 0.05
REASON = "timed out after 0.05s"

#: (runtime, handler): an async handler needs the async runtime.
HOWS = [("sync", "sync"), ("async", "sync"), ("async", "async")]


class Slow:
    """A handler that runs until released, 0.5 s at most: past its timeout."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = threading.Event()
        self.ended = threading.Event()

    def tool(self, effect: Effect, kind: str, **options: Any) -> Tool[Any]:
        def wait(n: int) -> int:
            self.runs += 1
            self.release.wait(0.5)
            self.ended.set()
            return n

        async def sleep(n: int) -> int:
            self.runs += 1
            if not self.release.is_set():
                await asyncio.sleep(0.5)  # cancelled at the timeout
            self.ended.set()
            return n

        handler = wait if kind == "sync" else sleep
        options.setdefault("timeout", TIMEOUT)
        return tool(name="slow", effect=effect, **options)(handler)


@pytest.mark.parametrize("effect", list(Effect), ids=str)
@pytest.mark.parametrize(("runtime", "handler"), HOWS, ids=[f"{r}-rt-{h}-handler" for r, h in HOWS])
def test_a_handler_past_its_timeout(
    store_url: str, runtime: str, handler: str, effect: Effect
) -> None:
    slow = Slow()
    rules = [allow_all] if effect is Effect.IRREVERSIBLE else []
    rt = make(runtime, store_url, tools=[slow.tool(effect, handler)], rules=rules)
    try:
        first = rt.call("slow", {"n": 1})
        if effect is Effect.READ:
            assert (first.status, first.error, first.retryable) == (Status.FAILED, REASON, True)
            slow.release.set()
            assert rt.call("slow", {"n": 1}).status == Status.EXECUTED  # it may run again
            assert slow.runs == 2
            assert [(e.status, e.error) for e in rt.events()] == [
                ("failed", REASON),
                ("executed", None),
            ]
            return
        assert (first.status, first.reason) == (Status.INDETERMINATE, REASON)
        assert first.key is not None
        claim = rt.store.get_claim(GetClaim(first.key))
        assert claim is not None and (claim.state, claim.error) == ("indeterminate", REASON)
        slow.release.set()
        if handler == "sync":
            assert slow.ended.wait(5)  # its thread ran on to the end...
        else:
            assert not slow.ended.is_set()  # ...a coroutine was cancelled at the timeout
        again = rt.call("slow", {"n": 1})
        assert again.status == Status.INDETERMINATE and slow.runs == 1  # not run again
        rows = rt.events()
        assert [e.status for e in rows] == ["started", "indeterminate", "indeterminate"]
        assert rows[1].rejection_reason == REASON and (rows[1].duration_ms or 0) >= 50
    finally:
        slow.release.set()
        rt.close()


@pytest.mark.parametrize(
    "effect", [Effect.MUTATE_LOCAL, Effect.MUTATE_EXTERNAL, Effect.IRREVERSIBLE]
)
@pytest.mark.parametrize("happened", [True, False], ids=["happened", "did not happen"])
def test_reconcile_decides_after_a_timeout(
    make_runtime: MakeRuntime, effect: Effect, happened: bool
) -> None:
    slow = Slow()
    asked: list[dar.CallInfo | None] = []

    def reconcile(inp: dict[str, Any]) -> Reconciled:
        asked.append(dar.current_call())
        return Reconciled(executed=happened, output=inp["n"])

    slow_tool = slow.tool(effect, "sync", reconcile=reconcile)
    rt = make_runtime(tools=[slow_tool], rules=[allow_all])
    assert rt.call("slow", {"n": 1}).status == Status.INDETERMINATE
    slow.release.set()
    assert slow.ended.wait(5)
    again = rt.call("slow", {"n": 1})
    [info] = asked
    assert info is not None and info.attempt == 2
    if happened:
        assert (again.status, again.output, again.extra) == (
            Status.CACHED,
            1,
            {"reconciled": True},
        )
        assert slow.runs == 1
    else:
        assert again.status == Status.EXECUTED and slow.runs == 2


def test_a_handler_within_its_timeout_runs_as_usual(make_runtime: MakeRuntime) -> None:
    quick = tool(name="quick", effect=Effect.MUTATE_EXTERNAL, timeout=5)(lambda n: n * 2)
    rt = make_runtime(tools=[quick])
    assert rt.call("quick", {"n": 2}).output == 4
    assert rt.call("quick", {"n": 2}).status == Status.CACHED


def test_a_saga_step_that_times_out_waits_for_an_operator(make_runtime: MakeRuntime) -> None:
    """It may have happened: the saga neither undoes the steps before it as if it had not,
    nor runs it again."""
    slow = Slow()
    undone: list[int] = []
    undo = tool(name="undo", effect=Effect.MUTATE_EXTERNAL)(lambda n: undone.append(n))
    book = tool(name="book", effect=Effect.MUTATE_EXTERNAL, compensate=undo)(lambda n: n)
    ship = slow.tool(Effect.MUTATE_EXTERNAL, "sync", compensate=undo)
    rt = make_runtime(tools=[book, ship])
    with rt.saga("order-1") as saga:
        saga.call("book", {"n": 1})
        saga.call("slow", {"n": 1})
    slow.release.set()
    assert saga.result == "needs_operator" and slow.runs == 1 and undone == []
    [record] = rt.sagas("needs_operator")
    assert "step 1 (slow) may or may not have happened" in (record.error or "")


@pytest.mark.parametrize("handler", ["async", "sync"])
def test_cancelling_a_call_with_a_timeout_is_recorded(store_url: str, handler: str) -> None:
    """The caller's own cancellation, before the tool's timeout, is a cancellation: a
    coroutine stops, so a `mutate-local` key is released; a thread runs on, so it is not."""
    slow = Slow()
    slow_tool = slow.tool(Effect.MUTATE_LOCAL, handler, timeout=5)

    async def main() -> None:
        async with AsyncRuntime(store_url, tools=[slow_tool]) as art:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(art.call("slow", {"n": 1}), 0.2)
            [row] = await art.events(status="cancelled")
            claim = await art._run(GetClaim(row.idempotency_key or ""))
            assert claim is not None and row.rejection_reason is not None
            if handler == "async":
                assert row.rejection_reason == "cancelled while running: CancelledError"
                assert claim.state == "released"
            else:
                assert row.rejection_reason.endswith("(the handler's thread runs on)")
                assert claim.state == "indeterminate"

    asyncio.run(main())
    slow.release.set()
    assert slow.runs == 1
    assert slow.ended.wait(5) if handler == "sync" else not slow.ended.is_set()


def test_ctrl_c_while_a_thread_runs_keeps_the_key(store_url: str) -> None:
    """Ctrl-C while a blocking runtime waits for a sync handler's thread: the call is
    logged cancelled, and a `mutate-local` key stays held, as the thread runs on."""
    slow = Slow()

    @tool(name="slow", effect=Effect.MUTATE_LOCAL, timeout=5)
    def interrupts(n: int) -> int:
        _thread.interrupt_main()  # Ctrl-C, delivered to the waiting main thread
        slow.release.wait(0.5)
        slow.ended.set()
        return n

    with Runtime(store_url, tools=[interrupts]) as rt:
        with pytest.raises(KeyboardInterrupt):
            rt.call("slow", {"n": 1})
        [row] = rt.events(status="cancelled")
        claim = rt.store.get_claim(GetClaim(row.idempotency_key or ""))
        assert claim is not None and claim.state == "indeterminate"
        slow.release.set()
        assert slow.ended.wait(5)
        assert rt.call("slow", {"n": 1}).status == Status.INDETERMINATE  # not run again


@pytest.mark.parametrize("timeout", [0, -1, math.nan, math.inf, "5", True])
def test_a_timeout_must_be_positive_seconds(timeout: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"tool 'slow': timeout must be a positive"):
        tool(name="slow", effect=Effect.READ, timeout=timeout)(lambda: None)
    with pytest.raises(ConfigurationError, match="timeout"):
        Tool(name="slow", handler=lambda: None, effect=Effect.READ, timeout=timeout)
