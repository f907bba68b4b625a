"""Context that flows into calls without being passed: the session (correlation id) of
the surrounding code, the call a handler is running in (so nested calls link to it), and
what a handler may know of its own call (`current_call`)."""

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


enclosing_call: ContextVar[CurrentCall | None] = ContextVar("dar_enclosing_call", default=None)


@dataclass(frozen=True, slots=True)
class CallInfo:
    """The call a handler (or a ``reconcile``) is running for, as `current_call` gives it.

    ``key`` is the key to forward to a provider that deduplicates by an idempotency key
    (``Idempotency-Key``): stable across every retry, crash recovery and reconcile of the
    same call, different for every other call and every other database, at most 36
    characters, and no clue to the input. None for a ``read``, which has no key.
    ``event_id`` is the call's first row in the log, ``attempt`` counts the times this
    key was claimed (2 after a crash or a timeout), ``tool`` is the tool's name.
    """

    key: str | None
    event_id: str
    correlation_id: str | None
    attempt: int
    tool: str


_call_info: ContextVar[CallInfo | None] = ContextVar("dar_call_info", default=None)

#: The model's own id of the tool call being made (an integration sets it around
#: ``rt.call``), so a trace names the call as the model and the SDK's own spans do.
model_tool_call_id: ContextVar[str | None] = ContextVar("dar_model_tool_call_id", default=None)


@contextmanager
def model_tool_call(call_id: str | None) -> Iterator[None]:
    """Make ``call_id`` (the model's id of the tool call) the one `model_tool_call_id` gives."""
    token = model_tool_call_id.set(call_id)
    try:
        yield
    finally:
        model_tool_call_id.reset(token)


def current_call() -> CallInfo | None:
    """The call the code runs in: inside a handler or a ``reconcile`` (sync or async, a
    saga's step, a tool the MCP proxy forwards), its `CallInfo`; None anywhere else.

    >>> @tool(effect=Effect.MUTATE_EXTERNAL)
    ... def charge(customer: str, cents: int) -> dict:
    ...     key = dar.current_call().key  # forward it: the provider deduplicates too
    """
    return _call_info.get()


@contextmanager
def running_call(info: CallInfo) -> Iterator[None]:
    """Set `current_call` (and the enclosing call nested calls link to) around user code."""
    outer = enclosing_call.set(CurrentCall(info.event_id, info.correlation_id))
    token = _call_info.set(info)
    try:
        yield
    finally:
        _call_info.reset(token)
        enclosing_call.reset(outer)


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
