"""Both runtimes behind one blocking interface, so one conformance suite runs on each.

`BlockingAsync` drives an `AsyncRuntime` on an event loop of its own thread: the test calls
`execute` as it would on a `Runtime`, and the call runs as a coroutine, with the store in
the async runtime's worker threads and waits on the loop. Every coroutine method is
wrapped the same way, so a method added to the runtimes needs nothing here.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from dar import AsyncRuntime, Runtime
from dar.runtime import AsyncSagaScope

RUNTIME_KINDS = ["sync", "async"]


class BlockingAsync:
    """An `AsyncRuntime` with the blocking methods of a `Runtime`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.art = AsyncRuntime(*args, **kwargs)

    def _await(self, coro: Coroutine[Any, Any, Any]) -> Any:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a blocking call from the event loop's own thread: await it")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.art, name)  # store, rules, add_rule, clock, owner, ...
        if inspect.iscoroutinefunction(found):
            return self._blocking(found)
        if name == "saga":
            return lambda *args, **kwargs: BlockingSaga(self, found(*args, **kwargs))
        return found

    def _blocking(self, method: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._await(method(*args, **kwargs))

        return call

    def close(self) -> None:
        try:
            self._await(self.art.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> BlockingAsync:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make(kind: str, *args: Any, **kwargs: Any) -> Any:
    """A runtime of ``kind`` (``sync`` or ``async``) with the blocking interface."""
    if kind == "sync":
        return Runtime(*args, **kwargs)
    return BlockingAsync(*args, **kwargs)


class BlockingSaga:
    """An `AsyncSagaScope` used with ``with``, as a `SagaScope` is."""

    def __init__(self, owner: BlockingAsync, scope: AsyncSagaScope) -> None:
        self._owner, self._scope = owner, scope

    def __enter__(self) -> BlockingSaga:
        self._owner._await(self._scope.__aenter__())
        return self

    def call(self, *args: Any, **kwargs: Any) -> Any:
        return self._owner._await(self._scope.call(*args, **kwargs))

    def __exit__(self, *exc: Any) -> bool:
        return bool(self._owner._await(self._scope.__aexit__(*exc)))

    @property
    def result(self) -> str:
        return self._scope.result
