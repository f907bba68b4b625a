"""The closed vocabularies of the store: claim states and event-row kinds.

Both are written to the database as their string values; everywhere they are read back
(replay, trace, stats) they are mapped exhaustively, so a new state or kind cannot be
silently misread as another.
"""

from __future__ import annotations

import enum

from dar.effects import Status


class ClaimState(str, enum.Enum):
    """Where one idempotency key stands (`agent_tool_claims.state`)."""

    RUNNING = "running"  # a worker holds the key until its lease runs out
    DONE = "done"  # the effect happened; the recorded output answers duplicates
    FAILED = "failed"  # the handler raised, and the tool keeps failures
    RELEASED = "released"  # nothing holds the key: the next call takes it
    INDETERMINATE = "indeterminate"  # a crash left it unknown: an operator decides

    def __str__(self) -> str:
        return self.value


class EventKind(str, enum.Enum):
    """What one row of the event log records (`agent_tool_events.status`)."""

    STARTED = "started"  # a claim was taken: the handler is about to run
    EXECUTED = "executed"
    CACHED = "cached"
    REJECTED = "rejected"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    CONFLICT = "conflict"
    INDETERMINATE = "indeterminate"
    CANCELLED = "cancelled"  # the handler was interrupted (asyncio cancellation, Ctrl-C)
    APPROVAL_REQUESTED = "approval_requested"  # the call waits for a person's decision
    APPROVED = "approved"  # a person approved that exact call
    DENIED = "denied"  # a person refused it
    APPROVAL_USED = "approval_used"  # a call used the grant (single use)
    PLANNED = "planned"  # a dry run: what the call would do, and its preview
    STALE = "stale"  # a plan's commit refused: the rules, the key or the clock moved
    SAGA_STARTED = "saga_started"  # a saga began: its calls are nested under this row
    SAGA_COMPENSATING = "saga_compensating"  # a step did not complete: undoing the others
    SAGA_ENDED = "saga_ended"  # completed, compensated, or waiting for an operator (reason)
    RUN_STARTED = "run_started"  # a durable run began, or a worker took it over (reason)
    RUN_STEP = "run_step"  # a durable run's journaled step: a model turn, a tool call, a value
    RUN_SUSPENDED = "run_suspended"  # a run waits for a person's decision on one call
    RUN_ENDED = "run_ended"  # a run finished or failed (reason)
    SPECULATED = "speculated"  # a search: its start, a node of its tree, its chosen path
    RELEASED = "released"  # a claim given back without running (kept for old logs)
    RESOLVED = "resolved"  # an operator decided an indeterminate call
    PURGED = "purged"  # an administrator removed old rows

    def __str__(self) -> str:
        return self.value

    @property
    def outcome(self) -> Status | None:
        """The status a call whose last row is of this kind ended with, as replay and
        trace report it; None for rows that are not about a tool call."""
        return _OUTCOME[self]


_OUTCOME: dict[EventKind, Status | None] = {
    EventKind.STARTED: Status.INDETERMINATE,  # its worker died before any outcome
    EventKind.EXECUTED: Status.EXECUTED,
    EventKind.CACHED: Status.CACHED,
    EventKind.REJECTED: Status.REJECTED,
    EventKind.FAILED: Status.FAILED,
    EventKind.IN_PROGRESS: Status.IN_PROGRESS,
    EventKind.CONFLICT: Status.CONFLICT,
    EventKind.INDETERMINATE: Status.INDETERMINATE,
    EventKind.CANCELLED: Status.CANCELLED,
    EventKind.APPROVAL_REQUESTED: Status.AWAITING_APPROVAL,
    EventKind.APPROVED: Status.AWAITING_APPROVAL,  # approved: the call may now be repeated
    EventKind.DENIED: Status.REJECTED,
    EventKind.APPROVAL_USED: Status.INDETERMINATE,  # its call went on to claim the key
    EventKind.PLANNED: Status.PLANNED,
    EventKind.STALE: Status.STALE,
    EventKind.SAGA_STARTED: None,  # a group of calls, not a call
    EventKind.SAGA_COMPENSATING: None,
    EventKind.SAGA_ENDED: None,
    EventKind.RUN_STARTED: None,
    EventKind.RUN_STEP: None,  # the journal of a run, not a call
    EventKind.RUN_SUSPENDED: None,
    EventKind.RUN_ENDED: None,
    EventKind.SPECULATED: None,  # the record of a search, not a call
    EventKind.RELEASED: Status.REJECTED,  # only written after a refusal, by older versions
    EventKind.RESOLVED: Status.CACHED,
    EventKind.PURGED: None,
}
assert set(_OUTCOME) == set(EventKind), "every event kind maps to an outcome"


def event_kind(value: str) -> EventKind | None:
    """The kind of a stored row, or None for a value this version does not know."""
    try:
        return EventKind(value)
    except ValueError:
        return None
