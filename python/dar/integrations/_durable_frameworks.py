"""What the SDK modules' ``durable(...)`` wrappers share: a model call journaled as a step
of the current durable run.

Inside a run, a model call is step ``model <name>``: its request (the model's input as
JSON: messages, settings, tools) is compared with the record, and a recorded response is
rebuilt as the SDK's own types without asking the model. Outside a run the call is made as
it would be without dar.

The SDKs call models from coroutines. On an `AsyncRuntime` the journal is written on the
event loop (`ajournaled`). A blocking `Runtime` writes it from a worker thread (the loop
never waits on the database), while the model's coroutine runs on the SDK's loop as usual.

The SDKs run a turn's tool calls concurrently; inside a run, `one_tool_call_at_a_time` (and
`blocking_one_tool_call_at_a_time`, for an SDK that runs them in threads) makes a run's
calls take their journal numbers and write their steps one after another, in the order the
SDK started them, and lets none start once one has suspended the run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

from pydantic_core import to_jsonable_python

from dar.context import enclosing_call
from dar.core.runs import RunSuspended
from dar.runtime.journal import (
    Decode,
    Encode,
    Run,
    ajournaled,
    ajournaled_stream,
    journaled,
    running,
)

T = TypeVar("T")

KIND = "model"


def in_run() -> bool:
    """Whether the calling code is part of a durable run (else the wrappers pass through)."""
    return running() is not None


def jsonable(value: Any) -> Any:
    """A value's JSON form, for a request the journal compares: pydantic models and
    dataclasses by their fields, ``None`` members left out (a member set to None and one
    never set read the same), and anything else by its type's name (never a ``repr``, which
    may hold an address that differs between two runs)."""
    return to_jsonable_python(value, exclude_none=True, fallback=_named)


def _named(value: Any) -> str:
    return f"<{type(value).__qualname__}>"


def without(mapping: Any, keys: Iterable[str]) -> Any:
    """``mapping`` without ``keys`` (anything else as it is)."""
    if not isinstance(mapping, dict):
        return mapping
    dropped = set(keys)
    return {k: v for k, v in mapping.items() if k not in dropped}


async def model_call(
    name: str,
    request: Callable[[], Any],
    call: Callable[[], Awaitable[T]],
    encode: Encode,
    decode: Decode,
) -> T:
    """``await call()``, journaled as step ``model name`` of the current run. ``request``
    builds the request to compare (only inside a run)."""
    run = running()
    if run is None:
        return await call()
    if run.is_async:
        answered: T = await ajournaled(KIND, name, request(), call, encode, decode)
        return answered
    loop = asyncio.get_running_loop()
    call_off = _CallOff()

    def blocking() -> T:
        started: concurrent.futures.Future[T] = call_off.start(
            lambda: asyncio.run_coroutine_threadsafe(_awaited(call), loop)
        )
        return started.result()

    try:
        # to_thread copies the context: the worker sees the run.
        done: T = await asyncio.to_thread(
            journaled, KIND, name, request(), blocking, encode, decode
        )
    except asyncio.CancelledError:
        call_off.cancel()  # the model's call is cancelled too (and nothing recorded)
        raise
    return done


class _CallOff:
    """A call started from a worker thread that the awaiting task may cancel, before it
    starts or while it runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._future: concurrent.futures.Future[Any] | None = None
        self._cancelled = False

    def start(
        self, submit: Callable[[], concurrent.futures.Future[T]]
    ) -> concurrent.futures.Future[T]:
        with self._lock:
            if self._cancelled:
                raise concurrent.futures.CancelledError
            future = self._future = submit()
            return future

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._future is not None:
                self._future.cancel()


async def _awaited(call: Callable[[], Awaitable[T]]) -> T:
    return await call()


async def model_stream(
    name: str,
    request: Callable[[], Any],
    open_stream: Callable[[], AsyncIterator[Any]],
    encode: Callable[[Any], Any],
    decode: Decode,
    tokens: Callable[[list[Any]], int],
) -> AsyncIterator[Any]:
    """A streamed model call, journaled as step ``model name``: on an `AsyncRuntime` the
    chunks are passed on as they arrive and recorded when the stream ends (a stream cut
    short records nothing); a resumed run gets the recorded chunks back. On a blocking
    `Runtime` the stream is read to its end before its chunks are passed on (the journal is
    written from a worker thread, as `model_call` does)."""
    run = running()
    if run is None:
        async for chunk in open_stream():
            yield chunk
        return
    if run.is_async:
        async for chunk in ajournaled_stream(
            KIND, name, request(), open_stream, encode, decode, tokens
        ):
            yield chunk
        return

    async def drain() -> list[Any]:
        return [chunk async for chunk in open_stream()]

    def encode_all(chunks: list[Any]) -> tuple[Any, int]:
        return [encode(c) for c in chunks], tokens(chunks)

    def decode_all(recorded: Any) -> list[Any]:
        return [decode(c) for c in recorded]

    for chunk in await model_call(name, request, drain, encode_all, decode_all):
        yield chunk


# --- a run's tool calls, one at a time ---------------------------------------------------------


class _Turn:
    """How one run's tool calls take turns in this process."""

    def __init__(self) -> None:
        self.blocking = threading.Lock()
        self.by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self.suspended: RunSuspended | None = None

    def check(self) -> None:
        """A call queued behind one that suspended the run does not start: it waits too."""
        if self.suspended is not None:
            raise RunSuspended(self.suspended.approval_id)


_turns: weakref.WeakKeyDictionary[Run, _Turn] = weakref.WeakKeyDictionary()
_making = threading.Lock()


def _journaled_turn() -> _Turn | None:
    """The run's turn keeper when the next tool call is journaled (a call made inside a
    handler is part of that call, not a step of its own), else None."""
    run = running()
    if run is None or enclosing_call.get() is not None:
        return None
    with _making:
        turn = _turns.get(run)
        if turn is None:
            turn = _turns[run] = _Turn()
        return turn


@asynccontextmanager
async def one_tool_call_at_a_time() -> AsyncIterator[None]:
    """Around a tool call an SDK makes from a coroutine (see the module): inside a run, the
    run's calls one after another, in the order they got here. Outside a run, nothing."""
    turn = _journaled_turn()
    if turn is None:
        yield
        return
    with _making:
        lock = turn.by_loop.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        turn.check()
        try:
            yield
        except RunSuspended as suspended:
            turn.suspended = suspended
            raise


@contextmanager
def blocking_one_tool_call_at_a_time() -> Iterator[None]:
    """`one_tool_call_at_a_time` for a tool call an SDK makes in a thread of its own. The
    calls still run one at a time, but in the order the threads get here, which may differ
    between a run and its resume."""
    turn = _journaled_turn()
    if turn is None:
        yield
        return
    with turn.blocking:
        turn.check()
        try:
            yield
        except RunSuspended as suspended:
            turn.suspended = suspended
            raise
