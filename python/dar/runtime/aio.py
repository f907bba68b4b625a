"""The asyncio runtime: the same decision core, with awaited handlers and rules.

Handlers and rule checks may be coroutine functions (plain functions work too). Stores are
synchronous (`dar.store.base`): each store operation runs in a worker thread of this
runtime, so a busy database never blocks the event loop, and a duplicate waiting for the
call in progress is woken on the loop by the store's change signal (Postgres
LISTEN/NOTIFY). One store implementation serves both runtimes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any

from dar.audit.replay import Replayer, load_replay
from dar.context import CurrentCall, current_call
from dar.core import dryrun, saga
from dar.core.dryrun import Plan
from dar.core.ops import (
    Append,
    CallHandler,
    CallSimulate,
    CallTool,
    CheckRule,
    DecideApproval,
    Finish,
    LogFilter,
    Mark,
    Op,
    Ops,
    Outcome,
    ReadLog,
    RedactionSalt,
    RequestApproval,
    Resolve,
    StoreOp,
    Take,
    TakeOrLookup,
    UseGrant,
    Wait,
)
from dar.records import Approval, Event, Result, SagaRecord
from dar.rules import Deny, NeedsApproval, Rule
from dar.runtime.base import (
    RuntimeBase,
    failure,
    interrupted,
    remember,
    rule_error,
    rule_result,
    success,
)
from dar.store import Store, store_of
from dar.tools import Tool

#: Store operations that change the database (never dropped by a cancellation).
WRITES = (
    Take,
    TakeOrLookup,
    Finish,
    Mark,
    Resolve,
    Append,
    RequestApproval,
    UseGrant,
    DecideApproval,
)

#: Worker threads per runtime when the store does not say how many connections it has.
THREADS = 4


class AsyncRuntime(RuntimeBase):
    """``Runtime`` for asyncio: ``await rt.execute(tool, input)``.

    ``store`` is a URL or a store object, as for ``Runtime``. Store operations run in up
    to as many worker threads as the store has connections.
    """

    def __init__(
        self,
        store: str | Store | None = None,
        *,
        tools: Iterable[Tool[Any]] = (),
        rules: Iterable[Rule] = (),
        wait: float = 30.0,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        replay: str | None = None,
        dry_run: bool = False,
    ) -> None:
        super().__init__(
            tools=tools,
            rules=rules,
            wait=wait,
            clock=clock,
            owner=owner,
            in_memory=store is None,
            dry_run=dry_run,
        )
        self.store: Store = store_of(store)
        self._threads = ThreadPoolExecutor(
            max_workers=int(getattr(self.store, "max_size", THREADS)),
            thread_name_prefix="dar-store",
        )
        self._replay = replay
        self._replayer: Replayer | None = None
        self._salt: str | None = None

    async def _store(self, fn: Callable[[Store], Any], *, write: bool = False) -> Any:
        """Run ``fn(store)`` in a worker thread. A write is shielded: when the caller is
        cancelled meanwhile (an asyncio timeout around ``execute``), a write still waiting
        for a free thread is not dropped, and an outcome is recorded whatever happens to
        the coroutine."""
        done = asyncio.get_running_loop().run_in_executor(self._threads, fn, self.store)
        return await (asyncio.shield(done) if write else done)

    async def execute(
        self,
        tool: Tool[Any],
        input: Any,
        *,
        correlation_id: str | None = None,
        key: str | None = None,
        wait_for_approval: float = 0,
    ) -> Result:
        """Run one call. A refusal or a failing handler is a status, never an exception.

        A handler cancelled while it runs (a timeout around this call) is logged
        ``cancelled`` and the cancellation propagates."""
        if self._replay is not None:
            if self._replayer is None:
                self._replayer = await self._drive(load_replay(self._replay))
            return self._replayer.next(tool, input)
        planned = self._call_plan(tool, input, correlation_id, key, wait_for_approval, self.events)
        result: Result = await self._drive(planned)
        return remember(self, result)

    async def call(
        self,
        name: str,
        arguments: str | bytes | Mapping[str, Any] | None = None,
        *,
        correlation_id: str | None = None,
        key: str | None = None,
        wait_for_approval: float = 0,
    ) -> Result:
        """``Runtime.call``, awaited."""
        tool = self._tools.get(name) if isinstance(name, str) else None
        if tool is None:
            result: Result = await self._drive(self._unknown(name, arguments, correlation_id))
            return result
        return await self.execute(
            tool,
            arguments,
            correlation_id=correlation_id,
            key=key,
            wait_for_approval=wait_for_approval,
        )

    async def _drive(self, gen: Ops[Any]) -> Any:
        interrupt: BaseException | None = None
        try:
            op = next(gen)
            while True:
                answer = await self._run(op)
                if isinstance(answer, Outcome) and answer.interrupt is not None:
                    interrupt = answer.interrupt
                op = gen.send(answer)
        except StopIteration as stop:
            value = stop.value
        if interrupt is not None:
            raise interrupt  # recorded: now the caller's cancellation goes on
        return value

    async def _run(self, op: Op) -> Any:
        if isinstance(op, RedactionSalt) and self._salt is not None:
            return self._salt  # the database's salt never changes: no thread hop
        if isinstance(op, StoreOp):
            answer = await self._store(op.apply, write=isinstance(op, WRITES))
            if isinstance(op, RedactionSalt):
                self._salt = answer
            return answer
        if isinstance(op, Wait):
            return await self._wait(op)
        if isinstance(op, CheckRule):
            return await self._check(op)
        if isinstance(op, CallHandler):
            token = current_call.set(CurrentCall(op.call_event_id, op.correlation_id))
            try:
                return await _call(op.tool.handler, (), op.input)
            finally:
                current_call.reset(token)
        if isinstance(op, CallTool):  # a saga's step: an ordinary call, nested in the saga
            token = current_call.set(CurrentCall(op.parent_event_id, op.correlation_id))
            try:
                return await self.execute(
                    op.tool, op.input, correlation_id=op.correlation_id, key=op.key
                )
            finally:
                current_call.reset(token)
        if isinstance(op, CallSimulate):
            assert op.tool.simulate is not None
            return await _call(op.tool.simulate, (), op.input)
        assert op.tool.reconcile is not None
        return await _call(op.tool.reconcile, (op.input,), {})

    async def _wait(self, op: Wait) -> float:
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake() -> None:  # called from the store's listener thread
            loop.call_soon_threadsafe(changed.set)

        stop = self.store.on_change(op.key, wake)
        started = time.monotonic()
        try:
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), op.seconds)
        finally:
            if stop is not None:
                stop()
        return time.monotonic() - started

    async def _check(self, op: CheckRule) -> Deny | NeedsApproval | None:
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

    async def plan(
        self,
        tool: str | Tool[Any],
        arguments: str | bytes | Mapping[str, Any] | None = None,
        *,
        correlation_id: str | None = None,
        key: str | None = None,
        ttl: float = dryrun.DEFAULT_TTL,
    ) -> Plan:
        """Everything the call would do but the effect: parse, validate, the key's state,
        the rules and the tool's ``simulate`` (never the handler). Writes one ``planned``
        row; ``commit(plan)`` within ``ttl`` seconds runs exactly that call."""
        made: Plan = await self._drive(
            self._dry_run_plan(
                self._tool_named(tool), arguments, correlation_id, key, ttl, self.events
            )
        )
        return self._keep_plan(made)

    async def commit(self, plan: Plan) -> Result:
        """Run the planned call once, or answer ``stale`` (running nothing) when the rules
        in force, the key's state or the clock moved since the plan."""
        result: Result = await self._drive(self._commit_plan(plan, self.events))
        if plan in self._plans:
            self._plans.remove(plan)
        return remember(self, result)

    async def commit_all(self, correlation_id: str | None = None) -> list[Result]:
        """Commit the session's plans (all when None), in the order they were made."""
        return [await self.commit(p) for p in self.plans(correlation_id)]

    def saga(
        self, saga_id: str, *, correlation_id: str | None = None, lease: float = saga.LEASE
    ) -> AsyncSagaScope:
        """A durable saga: ``async with rt.saga("checkout-ORD-1") as saga: await saga.call(...)``.
        A step that does not complete, or an exception in the block, undoes the completed
        steps (their tools' ``compensate``), newest first, each exactly once."""
        cid, _parent = self._session(correlation_id)
        return AsyncSagaScope(self, saga_id, cid, lease)

    async def recover_sagas(self, *, stuck: bool = False) -> list[str]:
        """Finish every open saga whose worker's lease ran out: settle its unknown steps,
        then compensate (never resume it forward). ``stuck=True`` also retries sagas
        waiting for an operator. Returns their ids. The forward tools must be registered."""
        done = await self._drive(saga.recover_all(self.owner, self._tools, self.clock, stuck=stuck))
        return [s.saga_id for s in done]

    async def sagas(self, state: str | None = None) -> list[SagaRecord]:
        """Sagas, oldest first, in one state (``saga.STATES``) or all."""
        found: list[SagaRecord] = await self._drive(saga.listing(state))
        return found

    async def approvals(
        self, status: str | None = None, correlation_id: str | None = None
    ) -> list[Approval]:
        """Approval requests, newest first: ``pending``, ``approved`` (unused, unexpired),
        ``denied``, ``expired`` or ``used``; all when ``status`` is None."""
        found: list[Approval] = await self._drive(self._list_plan(status, correlation_id))
        return found

    async def approve(
        self, approval_id: str | Plan, by: str, note: str | None = None, ttl: float = 3600
    ) -> Approval:
        """Approve a pending request, or a plan (the person approves the preview they saw):
        the same call, made (or committed) within ``ttl`` seconds, runs once. Raises when
        there is nothing pending to decide."""
        if isinstance(approval_id, Plan):
            approval_id = str(await self._drive(self._request_for_plan(approval_id)))
        decided: Approval = await self._drive(self._decide_plan(approval_id, True, by, note, ttl))
        return decided

    async def deny(self, approval_id: str, by: str, reason: str | None = None) -> Approval:
        """Refuse a pending request: that exact call answers ``rejected`` with ``reason``."""
        decided: Approval = await self._drive(self._decide_plan(approval_id, False, by, reason, 0))
        return decided

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
        read = ReadLog(LogFilter(correlation_id, tool, status, key, since, limit))
        events: list[Event] = await self._store(read.apply)
        return events

    async def close(self) -> None:
        """Write buffered rows and close the store."""
        await self._store(lambda store: store.close())
        self._threads.shutdown(wait=False)

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
    except BaseException as exc:  # asyncio.CancelledError, KeyboardInterrupt
        return interrupted(exc, started)
    return success(value, started)


class AsyncSagaScope:
    """``async with art.saga(...) as saga``: `dar.runtime.sync.SagaScope`, awaited."""

    def __init__(
        self, rt: AsyncRuntime, saga_id: str, correlation_id: str | None, lease: float
    ) -> None:
        self._rt, self.saga_id, self.correlation_id = rt, saga_id, correlation_id
        self.lease = lease
        self._saga: saga.Saga | None = None

    async def __aenter__(self) -> AsyncSagaScope:
        self._saga = await self._rt._drive(
            saga.begin(
                self.saga_id, self.correlation_id, self._rt.owner, self._rt.clock, self.lease
            )
        )
        return self

    async def call(self, name: str, arguments: Any = None) -> Result:
        """One step; raises `SagaAborted` (caught by the block) when it does not complete."""
        state = self._state()
        tool = self._rt._tool_named(name)
        result: Result = await self._rt._drive(
            saga.forward(state, tool, arguments, self._rt._tools, self._rt.clock)
        )
        if not result.ok:
            raise saga.SagaAborted(self.saga_id, result, state.state)
        return result

    async def __aexit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        state = self._state()
        if exc is None and state.state == saga.OPEN:
            await self._rt._drive(saga.finish(state, self._rt.clock))
        elif isinstance(exc, Exception) and state.state == saga.OPEN:
            await self._rt._drive(saga.compensate(state, self._rt._tools, self._rt.clock))
        return isinstance(exc, saga.SagaAborted)

    @property
    def result(self) -> str:
        return self._state().state

    def _state(self) -> saga.Saga:
        if self._saga is None:
            raise RuntimeError("use the saga as a context manager: async with art.saga(...)")
        return self._saga
