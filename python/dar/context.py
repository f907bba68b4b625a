"""Context that flows into calls without being passed: the session (correlation id) of
the surrounding code, and the call a handler is running in, so nested calls link to it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CurrentCall:
    """The enclosing call: its first event's id and its correlation id."""

    event_id: str
    correlation_id: str | None


current_call: ContextVar[CurrentCall | None] = ContextVar("dar_current_call", default=None)

current_session: ContextVar[str | None] = ContextVar("dar_session", default=None)


@contextmanager
def session(correlation_id: str) -> Iterator[str]:
    """Every call inside gets this correlation id unless it names its own:

    >>> with dar.session("conv-1"):
    ...     rt.call("get_order", '{"order_id": "ORD-1"}')

    A context variable, so it follows asyncio tasks and does not leak between threads.
    """
    if not isinstance(correlation_id, str) or not correlation_id:
        raise TypeError(f"session() takes a non-empty str, not {correlation_id!r}")
    token = current_session.set(correlation_id)
    try:
        yield correlation_id
    finally:
        current_session.reset(token)
