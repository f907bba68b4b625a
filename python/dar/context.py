"""The call a handler is running in, so nested tool calls link to their parent."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CurrentCall:
    """The enclosing call: its first event's id and its correlation id."""

    event_id: str
    correlation_id: str | None


current_call: ContextVar[CurrentCall | None] = ContextVar("dar_current_call", default=None)
