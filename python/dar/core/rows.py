"""Every event row is built here: a call's rows, the operator's and the administrator's.

One place decides what a row carries (its call id, session, parent, time in whole
microseconds), so the core, the CLI and the stores cannot drift into other conventions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dar.core.ids import new_id
from dar.core.states import EventKind
from dar.records import Claim, Event, NewEvent


def storable(text: str | None) -> str | None:
    """Text every database stores as given: a NUL or a lone surrogate (from an exception's
    message, say) is written escaped, never refused after the effect has happened."""
    if text is None or ("\x00" not in text and text.isascii()):
        return text
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


_TEXT_FIELDS = ("rejection_reason", "error")


def when(seconds: float) -> float:
    """Whole microseconds: what both databases store exactly (the hash chain needs it)."""
    return round(seconds, 6)


@dataclass(frozen=True, slots=True)
class CallRows:
    """Builds the rows of one call: each carries the call's id, tool, session and parent."""

    call_id: str
    tool_name: str
    effect: str
    correlation_id: str | None
    parent_event_id: str | None
    clock: Callable[[], float]

    def row(self, kind: EventKind, *, event_id: str | None = None, **fields: Any) -> NewEvent:
        for name in _TEXT_FIELDS:
            if name in fields:
                fields[name] = storable(fields[name])
        return NewEvent(
            event_id=event_id or new_id(),
            call_id=self.call_id,
            tool_name=self.tool_name,
            effect=self.effect,
            status=kind.value,
            created_at=when(self.clock()),
            correlation_id=self.correlation_id,
            parent_event_id=self.parent_event_id,
            **fields,
        )


def resolved_row(
    claim: Claim,
    executed: bool,
    output: str | None,
    note: str | None,
    now: float,
    started: Event | None = None,
) -> NewEvent:
    """The row of an operator's decision on a claim (`dar resolve`). With the call's
    ``started`` row it joins that call: same session, call id, effect and parent, so
    `dar trace` shows how the story ended."""
    decision = "executed" if executed else "not executed"
    return NewEvent(
        event_id=new_id(),
        tool_name=claim.tool_name,
        effect="" if started is None else started.effect,
        status=EventKind.RESOLVED.value,
        created_at=when(now),
        idempotency_key=claim.key,
        input_hash=claim.input_hash,
        output=output,
        rejection_reason=f"operator: {decision}" + (f" ({note})" if note else ""),
        attempt=claim.attempts,
        correlation_id=None if started is None else started.correlation_id,
        parent_event_id=None if started is None else started.parent_event_id,
        call_id=None if started is None else started.call_id,
    )


def admin_row(kind: EventKind, reason: str, now: float) -> NewEvent:
    """The row of an administrative act on the log itself (`dar purge`)."""
    return NewEvent(
        event_id=new_id(),
        tool_name="dar",
        effect="admin",
        status=kind.value,
        created_at=when(now),
        rejection_reason=reason,
    )
