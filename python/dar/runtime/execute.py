"""How a runtime executes the operations the core yields: once blocking, once awaited.

Everything that truly differs between `Runtime` and `AsyncRuntime` is here, side by side:
the drive loop, where store operations run (the caller's thread, or a worker thread with
writes shielded from cancellation), how a duplicate waits for the call in progress, and
how user code (rules, handlers, ``simulate``, ``reconcile``) is called and judged. The two
facades above (`dar.runtime.aio`, and `dar.runtime.sync` generated from it) only set up
each decision and hand it to `Executor.drive` or `AsyncExecutor.drive`, so one call stays
in this file from its first operation to its last.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext, suppress
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dar.context import CurrentCall, enclosing_call, running_call
from dar.core.ops import (
    Append,
    CallHandler,
    CallSimulate,
    CallTool,
    CheckGuards,
    CheckRule,
    DecideApproval,
    Embed,
    Finish,
    GetApproval,
    GetClaim,
    GetSaga,
    ListApprovals,
    ListSagas,
    Lookup,
    Mark,
    Op,
    Ops,
    Outcome,
    ReadLog,
    RedactionSalt,
    RequestApproval,
    ReserveGuards,
    Resolve,
    SettleGuards,
    StoreOp,
    Take,
    TakeOrLookup,
    UseGrant,
    Wait,
)
from dar.effects import Effect
from dar.embedding import Embedder, embed
from dar.errors import ModeError
from dar.rules import Deny, NeedsApproval, Rule, refusal_of
from dar.store import Store

if TYPE_CHECKING:
    from dar.runtime.aio import AsyncRuntime
    from dar.runtime.sync import Runtime

#: Store operations that change the database (never dropped by a cancellation); a look-up
#: writes its hit's row.
WRITES = (
    Take,
    TakeOrLookup,
    Lookup,
    Finish,
    Mark,
    Resolve,
    Append,
    RequestApproval,
    UseGrant,
    DecideApproval,
    ReserveGuards,
    SettleGuards,
)

#: Store operations that only read: the only ones a replay lets through.
READS = (
    GetClaim,
    ReadLog,
    RedactionSalt,
    GetApproval,
    ListApprovals,
    GetSaga,
    ListSagas,
    CheckGuards,
)

#: Rows a dry run may write: its plans, and the refusals and stale answers it gives.
DRY_RUN_ROWS = frozenset({"planned", "rejected", "stale", "speculated"})

#: True while a search (`rt.speculate`) runs in this context: every operation then passes
#: the dry run's gate, whatever the runtime's own mode, so no handler but a read's can run
#: inside a search, from any entry point (``propose`` calling ``rt.call`` included).
SANDBOX: contextvars.ContextVar[bool] = contextvars.ContextVar("dar_sandbox", default=False)

#: True while the event loop serves one caller who waits for each answer anyway (`dar
#: mcp-proxy` on stdio): an async runtime's store operations then run on the loop itself.
#: A worker-thread hop costs 60-120 µs of CPU and as much latency (two thread wake-ups),
#: and a fresh call makes two; on such a loop, blocking it only makes that caller's
#: parallel calls take turns at the store. Nothing can interrupt an operation run this way,
#: so a write is never dropped by a cancellation either.
STORE_ON_LOOP: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "dar_store_on_loop", default=False
)


def mode_of(rt: Any) -> str | None:
    """The gate the runtime's operations pass now: its mode, or a dry run's in a search."""
    mode: str | None = rt.mode
    return mode if mode is not None or not SANDBOX.get() else "dry run"


def refusal_in_mode(mode: str | None, op: Op) -> str | None:
    """Why ``op`` may not run in ``mode`` (``"replay"`` or ``"dry run"``), or None. Every
    operation of every decision passes here, so no entry point can forget its mode."""
    if mode is None or isinstance(op, (*READS, Wait, CheckRule, Embed)):
        return None
    if mode == "dry run":
        if isinstance(op, CallSimulate):
            return None
        if isinstance(op, CallHandler) and op.tool.effect is Effect.READ:
            return None  # a dry run reads the world for real
        if isinstance(op, Append) and (
            op.event.status in DRY_RUN_ROWS or op.event.effect == Effect.READ.value
        ):
            return None
    what = f"{type(op).__name__} of {op.tool.name}" if hasattr(op, "tool") else type(op).__name__
    return (
        f"this runtime is a {mode}: {what} would "
        + ("run user code" if not isinstance(op, StoreOp) else "write to the store")
        + "; nothing but the "
        + ("recorded session" if mode == "replay" else "plan")
        + " may"
    )


def embedded(embedding: Callable[[], Embedder], op: Embed) -> list[tuple[float, ...]] | Outcome:
    """The vectors of ``op.texts``, checked; a failing embedder is an ``Outcome`` the core
    refuses the call with (its error named), never an exception through the caller."""
    embedder = embedding()  # no default embedder (the extra is missing): a setup error
    try:
        return embed(embedder, op.texts)
    except Exception as exc:
        return Outcome(False, error=f"{type(exc).__name__}: {exc}")


#: Worker threads per async runtime when the store does not say how many connections it has.
THREADS = 4


def drive(gen: Ops[Any], run: Callable[[Op], Any]) -> Any:
    """Run a decision to its end, ``run`` answering each operation in the caller's thread;
    an interruption of user code (Ctrl-C) is re-raised once the decision has recorded it."""
    interrupt: BaseException | None = None
    try:
        op = next(gen)
        while True:
            answer = run(op)
            if isinstance(answer, Outcome) and answer.interrupt is not None:
                interrupt = answer.interrupt
            op = gen.send(answer)
    except StopIteration as stop:
        value = stop.value
    if interrupt is not None:
        raise interrupt
    return value


class Executor:
    """Runs a decision's operations in the caller's thread."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def drive(self, gen: Ops[Any]) -> Any:
        return drive(gen, self.run)

    def run(self, op: Op) -> Any:
        mode = mode_of(self.rt)
        if mode is not None and (refused := refusal_in_mode(mode, op)) is not None:
            raise ModeError(refused)
        if isinstance(op, StoreOp):
            return op.apply(self.rt.store)
        if isinstance(op, Wait):
            return self.wait(op)
        if isinstance(op, CheckRule):
            return self.check(op)
        if isinstance(op, Embed):
            return embedded(self.rt.embedding, op)
        if isinstance(op, CallHandler):
            with running_call(op.info):
                if op.tool.timeout is None:
                    return call_user(op.tool.handler, (), op.input)
                return call_within(op.tool.timeout, op.tool.handler, op.input)
        if isinstance(op, CallTool):  # a saga's step: an ordinary call, nested in the saga
            token = enclosing_call.set(CurrentCall(op.parent_event_id, op.correlation_id))
            try:
                return self.rt._step(op)
            finally:
                enclosing_call.reset(token)
        if isinstance(op, CallSimulate):
            assert op.tool.simulate is not None
            return call_user(op.tool.simulate, (), op.input)
        assert op.tool.reconcile is not None
        with running_call(op.info) if op.info is not None else nullcontext():
            return call_user(op.tool.reconcile, (op.input,), {})

    def store(self, fn: Callable[[Store], Any]) -> Any:
        return fn(self.rt.store)

    def wait(self, op: Wait) -> float:
        changed = threading.Event()
        stop = self.rt.store.on_change(op.key, changed.set)
        started = time.monotonic()
        try:
            changed.wait(op.seconds)
        finally:
            if stop is not None:
                stop()
        return time.monotonic() - started

    def check(self, op: CheckRule) -> Deny | NeedsApproval | None:
        started = time.perf_counter()
        try:
            value = op.rule.check(op.input, op.ctx)
        except Exception as exc:
            return rule_error(op.rule, exc)
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()
            return Deny(f"rule {op.rule.name} is async: use AsyncRuntime")
        return rule_result(op.rule, value, time.perf_counter() - started)

    def close(self) -> None:
        self.rt.store.close()


class AsyncExecutor:
    """Runs a decision's operations on the event loop: store operations in worker threads
    (as many as the store has connections), user code awaited when it is a coroutine, and
    a waiting duplicate woken on the loop by the store's change signal (Postgres
    LISTEN/NOTIFY). One synchronous store implementation serves both runtimes."""

    def __init__(self, rt: AsyncRuntime) -> None:
        self.rt = rt
        self._threads = ThreadPoolExecutor(
            max_workers=int(getattr(rt.store, "max_size", THREADS)),
            thread_name_prefix="dar-store",
        )
        self._salt: str | None = None

    async def drive(self, gen: Ops[Any]) -> Any:
        """Run a decision to its end; a cancellation of user code is re-raised once the
        decision has recorded it."""
        interrupt: BaseException | None = None
        try:
            op = next(gen)
            while True:
                answer = await self.run(op)
                if isinstance(answer, Outcome) and answer.interrupt is not None:
                    interrupt = answer.interrupt
                op = gen.send(answer)
        except StopIteration as stop:
            value = stop.value
        if interrupt is not None:
            raise interrupt  # recorded: now the caller's cancellation goes on
        return value

    async def run(self, op: Op) -> Any:
        mode = mode_of(self.rt)
        if mode is not None and (refused := refusal_in_mode(mode, op)) is not None:
            raise ModeError(refused)
        if isinstance(op, RedactionSalt) and self._salt is not None:
            return self._salt  # the database's salt never changes: no thread hop
        if isinstance(op, StoreOp):
            answer = await self.store(op.apply, write=isinstance(op, WRITES))
            if isinstance(op, RedactionSalt):
                self._salt = answer
            return answer
        if isinstance(op, Wait):
            return await self.wait(op)
        if isinstance(op, CheckRule):
            return await self.check(op)
        if isinstance(op, Embed):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, embedded, self.rt.embedding, op)
        if isinstance(op, CallHandler):
            with running_call(op.info):
                if op.tool.timeout is None:
                    return await acall_user(op.tool.handler, (), op.input)
                return await acall_within(op.tool.timeout, op.tool.handler, op.input)
        if isinstance(op, CallTool):  # a saga's step: an ordinary call, nested in the saga
            token = enclosing_call.set(CurrentCall(op.parent_event_id, op.correlation_id))
            try:
                return await self.rt._step(op)
            finally:
                enclosing_call.reset(token)
        if isinstance(op, CallSimulate):
            assert op.tool.simulate is not None
            return await acall_user(op.tool.simulate, (), op.input)
        assert op.tool.reconcile is not None
        with running_call(op.info) if op.info is not None else nullcontext():
            return await acall_user(op.tool.reconcile, (op.input,), {})

    async def store(self, fn: Callable[[Store], Any], *, write: bool = False) -> Any:
        """Run ``fn(store)`` in a worker thread. A write is shielded: when the caller is
        cancelled meanwhile (an asyncio timeout around ``execute``), a write still waiting
        for a free thread is not dropped, and an outcome is recorded whatever happens to
        the coroutine. Under `STORE_ON_LOOP`, ``fn`` runs here, on the loop."""
        if STORE_ON_LOOP.get():
            return fn(self.rt.store)
        done = asyncio.get_running_loop().run_in_executor(self._threads, fn, self.rt.store)
        return await (asyncio.shield(done) if write else done)

    async def wait(self, op: Wait) -> float:
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake() -> None:  # called from the store's listener thread
            loop.call_soon_threadsafe(changed.set)

        stop = self.rt.store.on_change(op.key, wake)
        started = time.monotonic()
        try:
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), op.seconds)
        finally:
            if stop is not None:
                stop()
        return time.monotonic() - started

    async def check(self, op: CheckRule) -> Deny | NeedsApproval | None:
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

    async def close(self) -> None:
        await self.store(lambda store: store.close())
        self._threads.shutdown(wait=False)


def call_agent(agent: Callable[..., Any], args: list[Any]) -> Any:
    """Call a durable agent in a blocking run; a coroutine function needs `AsyncRuntime`."""
    value = agent(*args)
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()
        raise TypeError(f"{getattr(agent, '__qualname__', agent)} is async: use AsyncRuntime")
    return value


async def acall_agent(agent: Callable[..., Any], args: list[Any]) -> Any:
    """Call a durable agent, awaiting it when it is a coroutine function."""
    value = agent(*args)
    return await value if inspect.isawaitable(value) else value


def call_user(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    awaitable: bool = False,
) -> Outcome:
    """Call a handler, ``simulate`` or ``reconcile``; a coroutine function is refused
    (unless ``awaitable``: the async runtime awaits what it returns)."""
    started = time.perf_counter()
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:
        return failure(exc, started)
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: record, then re-raise
        return interrupted(exc, started)
    if inspect.isawaitable(value) and not awaitable:
        if inspect.iscoroutine(value):
            value.close()
        return Outcome(False, error=f"{getattr(fn, '__name__', fn)} is async: use AsyncRuntime")
    return success(value, started)


async def acall_user(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Outcome:
    """`call_user`, awaiting what a coroutine function returns."""
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


def call_within(timeout: float, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Outcome:
    """`call_user` in a thread of its own, waited for ``timeout`` seconds at most. Python
    cannot stop a thread: one still running then is left to finish, and its outcome,
    whenever it comes, is dropped (the call is already recorded as timed out)."""
    started = time.perf_counter()
    done: list[Outcome] = []
    finished = threading.Event()

    def report(outcome: Outcome) -> None:
        done.append(outcome)
        finished.set()

    try:
        in_thread(lambda: call_user(fn, (), kwargs), report)
        finished.wait(timeout)
    except BaseException as exc:  # Ctrl-C while waiting: the handler may be mid-effect
        return replace(interrupted(exc, started), still_running=not finished.is_set())
    return done[0] if done else overran(timeout, started)


async def acall_within(timeout: float, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Outcome:
    """`acall_user` for at most ``timeout`` seconds: a coroutine is cancelled then; a
    plain function runs in a thread of its own (on the loop it would block every other
    call, and could not be stopped there either), left to finish when it overruns."""
    started = time.perf_counter()
    if inspect.iscoroutinefunction(fn):
        return await within(asyncio.ensure_future(acall_user(fn, (), kwargs)), timeout, started)
    loop = asyncio.get_running_loop()
    work: asyncio.Future[Outcome] = loop.create_future()

    def report(outcome: Outcome) -> None:  # in the handler's thread
        with suppress(RuntimeError):  # the loop is closed: no one waits any more
            loop.call_soon_threadsafe(settle, work, outcome)

    in_thread(lambda: call_user(fn, (), kwargs, awaitable=True), report)
    outcome = await within(work, timeout, started)
    if outcome.ok and inspect.isawaitable(outcome.value):  # a function that returned one
        value = outcome.value
        awaited = await within(
            asyncio.ensure_future(acall_user(lambda: value, (), {})), timeout, started
        )
        outcome = replace(awaited, duration_ms=_ms(started))
    return outcome


async def within(work: asyncio.Future[Outcome], timeout: float, started: float) -> Outcome:
    """The outcome of ``work`` (a task, or a thread's future), cancelled once ``timeout``
    seconds have passed since ``started``; this call's own cancellation cancels it too,
    and is recorded. Cancelling a thread's future stops only the waiting."""
    left = timeout - (time.perf_counter() - started)
    try:
        await asyncio.wait({work}, timeout=max(left, 0.0))
    except BaseException as exc:  # this call was cancelled: so is the handler
        thread_runs = not work.done() and not isinstance(work, asyncio.Task)
        work.cancel()
        return replace(interrupted(exc, started), still_running=thread_runs)
    if work.done() and not work.cancelled():
        return work.result()
    work.cancel()
    await asyncio.wait({work})  # its answer to the cancellation, whatever it is, is dropped
    return overran(timeout, started)


def in_thread(run: Callable[[], Outcome], report: Callable[[Outcome], None]) -> None:
    """Start ``run`` in a new thread with the caller's context (so `dar.current_call` and
    the session follow it), and ``report`` its outcome. A daemon thread: a handler stuck
    for good does not keep the process from exiting."""
    context = contextvars.copy_context()
    threading.Thread(
        target=lambda: report(context.run(run)), name="dar-handler", daemon=True
    ).start()


def settle(future: asyncio.Future[Any], outcome: Outcome) -> None:
    if not future.done():
        future.set_result(outcome)


def overran(timeout: float, started: float) -> Outcome:
    """The handler was still running at the deadline: its outcome is unknown."""
    return Outcome(False, error=f"timed out after {timeout:g}s", duration_ms=_ms(started),
                   timed_out=timeout)  # fmt: skip


def rule_result(rule: Rule, value: object, elapsed: float) -> Deny | NeedsApproval | None:
    """A check's refusal, if any; a check that ran past its timeout refuses."""
    if elapsed > rule.timeout:
        return Deny(f"rule {rule.name} timed out after {elapsed:.3f}s (limit {rule.timeout}s)")
    return refusal_of(rule.name, value)


def rule_error(rule: Rule, exc: BaseException) -> Deny:
    """Rules fail closed: an error in a check refuses the call."""
    return Deny(f"rule {rule.name} raised {type(exc).__name__}: {exc}")


def success(value: Any, started: float) -> Outcome:
    return Outcome(True, value, duration_ms=_ms(started))


def failure(exc: BaseException, started: float) -> Outcome:
    return Outcome(False, error=f"{type(exc).__name__}: {exc}", duration_ms=_ms(started))


def interrupted(exc: BaseException, started: float) -> Outcome:
    """Cancellation or Ctrl-C inside user code: recorded first, then re-raised."""
    return Outcome(False, error=type(exc).__name__, duration_ms=_ms(started), interrupt=exc)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
