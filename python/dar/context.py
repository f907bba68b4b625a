"""Context that flows into calls without being passed: the session (correlation id) of
the surrounding code, and the call a handler is running in, so nested calls link to it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from dar.errors import ConfigurationError

#: The longest correlation id, in UTF-8 bytes: it is indexed with the log's chain heads, and
#: an index entry has a size limit (Postgres: about 2.7 KB).
MAX_CORRELATION_ID = 1024


@dataclass(frozen=True, slots=True)
class CurrentCall:
    """The enclosing call: its first event's id and its correlation id."""

    event_id: str
    correlation_id: str | None


current_call: ContextVar[CurrentCall | None] = ContextVar("dar_current_call", default=None)

current_session: ContextVar[str | None] = ContextVar("dar_session", default=None)

#: The durable run the code is part of (a `dar.runtime.journal.Run`), if any.
current_run: ContextVar[Any] = ContextVar("dar_run", default=None)


@contextmanager
def session(correlation_id: str) -> Iterator[str]:
    """Every call inside gets this correlation id unless it names its own:

    >>> with dar.session("conv-1"):
    ...     rt.call("get_order", '{"order_id": "ORD-1"}')

    A context variable, so it follows asyncio tasks and does not leak between threads.
    """
    if not isinstance(correlation_id, str) or not correlation_id:
        raise TypeError(f"session() takes a non-empty str, not {correlation_id!r}")
    check_correlation_id(correlation_id)
    token = current_session.set(correlation_id)
    try:
        yield correlation_id
    finally:
        current_session.reset(token)


def check_correlation_id(value: str) -> None:
    """A correlation id every store can hold: no NUL character, at most
    `MAX_CORRELATION_ID` bytes. Refused before anything is written."""
    if "\x00" in value:
        raise ConfigurationError(
            f"correlation id {value[:80]!r} has a NUL character, which the log cannot store"
        )
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_CORRELATION_ID:
        raise ConfigurationError(
            f"correlation id {value[:40]!r}... is {size} bytes long; "
            f"at most {MAX_CORRELATION_ID} are stored"
        )
