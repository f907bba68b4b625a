"""The asyncio runtime: the same decision core, with awaited handlers, rules and stores.

Handlers and rule checks may be coroutine functions (plain functions work too). A store
with async methods (Postgres) is awaited; a sync store (SQLite) runs in a worker thread so
a busy database never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import time
from collections.abc import Callable, Generator, Iterable
from typing import Any

from dar._driver import RuntimeBase, failure, remember, rule_error, rule_result, success
from dar.context import CurrentCall, current_call
from dar.decide import CallHandler, CallReconcile, CheckRule, Op, Outcome, StoreOp, plan
from dar.records import Event, Result
from dar.replay import Replayer, load_replay
from dar.rules import Deny, Rule
from dar.store.base import AsyncStore, Store
from dar.stores import open_async_store
from dar.tools import Tool


class AsyncRuntime(RuntimeBase):
    """``Runtime`` for asyncio: ``await rt.execute(tool, input)``.

    ``store`` is a URL (``postgresql://`` opens an async pool; ``sqlite://`` a SQLite store
    used from a worker thread) or a store object, sync or async.
    """

    def __init__(
        self,
        store: str | Store | AsyncStore = "sqlite://:memory:",
        *,
        rules: Iterable[Rule] = (),
        wait: float = 30.0,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        replay: str | None = None,
    ) -> None:
        super().__init__(rules=rules, wait=wait, clock=clock, owner=owner)
        self.store: Store | AsyncStore = (
            open_async_store(store) if isinstance(store, str) else store
        )
        self._async_store = inspect.iscoroutinefunction(self.store.lookup)
        self._replay = replay
        self._replayer: Replayer | None = None

    async def _store(self, method: str, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(self.store, method)
        if self._async_store:
            return await fn(*args, **kwargs)
        if method == "wait":
            # A sync store's wait is a plain sleep: do it on the loop, not in a thread.
            await asyncio.sleep(args[1])
            return args[1]
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def execute(
        self,
        tool: Tool[Any],
        input: Any,
        *,
        correlation_id: str | None = None,
        key: str | None = None,
    ) -> Result:
        """Run one call. A refusal or a failing handler is a status, never an exception."""
        if self._replay is not None:
            if self._replayer is None:
                self._replayer = await self._drive(load_replay(self._replay))
            return self._replayer.next(tool.name, input)
        spec = self._spec(tool, input, correlation_id, key, self.events)
        result: Result = await self._drive(plan(spec))
        return remember(self, result)

    async def _drive(self, gen: Generator[Op, Any, Any]) -> Any:
        try:
            op = next(gen)
            while True:
                op = gen.send(await self._run(op))
        except StopIteration as stop:
            return stop.value

    async def _run(self, op: Op) -> Any:
        if isinstance(op, StoreOp):
            return await self._store(op.method, *op.args, **op.kwargs)
        if isinstance(op, CheckRule):
            return await self._check(op)
        if isinstance(op, CallHandler):
            token = current_call.set(CurrentCall(op.call_event_id, op.correlation_id))
            try:
                return await _call(op.tool.handler, (), op.input)
            finally:
                current_call.reset(token)
        if isinstance(op, CallReconcile):
            assert op.tool.reconcile is not None
            return await _call(op.tool.reconcile, (op.input,), {})
        raise TypeError(f"unknown operation {op!r}")

    async def _check(self, op: CheckRule) -> Deny | None:
        started = time.perf_counter()
        try:
            value = op.rule.check(op.input, op.ctx)
            if inspect.isawaitable(value):
                value = await asyncio.wait_for(value, op.rule.timeout)
        except asyncio.TimeoutError:
            return Deny(f"rule {op.rule.name} timed out after {op.rule.timeout}s")
        except Exception as exc:
            return rule_error(op.rule, exc)
        return rule_result(op.rule, value, time.perf_counter() - started)

    async def events(
        self,
        *,
        correlation_id: str | None = None,
        tool: str | None = None,
        status: str | None = None,
        key: str | None = None,
        since: dt.datetime | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Read the event log back, in order, as typed records."""
        events: list[Event] = await self._store(
            "events",
            correlation_id=correlation_id,
            tool=tool,
            status=status,
            key=key,
            since=since,
            limit=limit,
        )
        return events

    async def close(self) -> None:
        """Close the store."""
        await self._store("close")

    async def __aenter__(self) -> AsyncRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Outcome:
    started = time.perf_counter()
    try:
        value = fn(*args, **kwargs)
        if inspect.isawaitable(value):
            value = await value
    except Exception as exc:
        return failure(exc, started)
    return success(value, started)
