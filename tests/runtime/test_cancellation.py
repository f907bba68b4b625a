"""Cancellation: a handler interrupted by asyncio cancellation, a timeout or Ctrl-C is logged
at once, and an interrupted outcome write never loses the outcome."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest

import dar
from dar import (
    AsyncRuntime,
    Effect,
    Runtime,
    Status,
    tool,
)
from dar.runtime.execute import STORE_ON_LOOP
from tests.support.typed_tools import (
    runs,
)


@pytest.mark.parametrize(
    ("effect", "after"),
    [(Effect.MUTATE_LOCAL, Status.EXECUTED), (Effect.MUTATE_EXTERNAL, Status.INDETERMINATE)],
)
@pytest.mark.parametrize("on_loop", [False, True], ids=["store in threads", "store on loop"])
def test_asyncio_cancellation_is_logged_at_once(
    store_url: str, effect: Effect, after: Status, on_loop: bool
) -> None:
    started = asyncio.Event()

    @tool(name="slow", effect=effect, lease=3600)
    async def slow(n: int) -> int:
        started.set()
        await asyncio.sleep(0 if runs["slow"] else 30)
        runs["slow"] += 1
        return n

    async def scenario() -> None:
        STORE_ON_LOOP.set(on_loop)
        async with dar.AsyncRuntime(store_url, tools=[slow], wait=0.2) as art:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(art.call("slow", {"n": 1}, correlation_id="c"), 0.2)
            assert started.is_set()
            [row] = await art.events(status="cancelled")
            assert row.correlation_id == "c" and "CancelledError" in (row.rejection_reason or "")
            runs["slow"] = 1  # the next run returns at once
            # Not `in_progress` for the whole lease: released, or indeterminate now.
            assert (await art.call("slow", {"n": 1})).status == after

    asyncio.run(scenario())


def test_keyboard_interrupt_in_a_handler_is_logged_then_raised(store_url: str) -> None:
    @tool(effect=Effect.MUTATE_LOCAL)
    def interrupted(n: int) -> int:
        if not runs["interrupted"]:
            runs["interrupted"] += 1
            raise KeyboardInterrupt
        return n

    with Runtime(store_url, tools=[interrupted]) as rt:
        with pytest.raises(KeyboardInterrupt):
            rt.call("interrupted", {"n": 1})
        assert [e.status for e in rt.events()] == ["started", "cancelled"]
        assert rt.call("interrupted", {"n": 1}).status == Status.EXECUTED


def hold_log_lock(url: str, seconds: float) -> None:
    """From another connection, block every write to the log for ``seconds``."""
    if url.startswith("sqlite:"):
        import sqlite3

        conn = sqlite3.connect(
            url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False
        )
        conn.execute("BEGIN IMMEDIATE")
    else:
        from dar.store import split_schema

        base, schema = split_schema(url)
        conn = psycopg.connect(base)  # type: ignore[assignment]
        conn.execute(f'LOCK TABLE "{schema}".agent_tool_events IN EXCLUSIVE MODE')

    def release() -> None:
        conn.rollback() if not url.startswith("sqlite:") else conn.execute("ROLLBACK")
        conn.close()

    threading.Timer(seconds, release).start()


@pytest.mark.parametrize("effect", [Effect.MUTATE_LOCAL, Effect.MUTATE_EXTERNAL])
def test_a_timeout_during_the_outcome_write_does_not_lose_the_outcome(
    shared_url: str, effect: Effect
) -> None:
    """Found by the airtight review: cancellation during the outcome write loses the outcome."""
    ran: list[int] = []

    @tool(name="book", effect=effect, lease=2)
    async def book(n: int) -> dict[str, int]:
        ran.append(n)
        hold_log_lock(shared_url, 1.5)  # the outcome write now waits ~1.5 s
        return {"booked": n}

    async def main() -> tuple[Any, Any]:
        rt = AsyncRuntime(shared_url, wait=1)
        try:
            first: Any
            try:
                first = await asyncio.wait_for(rt.execute(book, {"n": 1}), 0.5)
            except asyncio.TimeoutError:
                first = "timed out"
            await asyncio.sleep(3.0)  # lock released, lease (2 s) expired
            again = await rt.execute(book, {"n": 1})
            return first, again
        finally:
            await rt.close()

    first, again = asyncio.run(main())
    assert first == "timed out"  # the timeout did fire during the outcome write
    assert again.status == Status.CACHED, f"outcome lost: {again.status}"
    assert again.output == {"booked": 1} and ran == [1]
