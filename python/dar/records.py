"""Plain records that cross the line between the decision core, the drivers and the stores."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from dar.effects import Status
from dar.reply import ModelReply, reply_for


@dataclass(frozen=True, slots=True)
class Claim:
    """The idempotency state of one key (one row of `agent_tool_claims`)."""

    key: str
    tool_name: str
    input_hash: str
    state: str  # running | done | failed | released | indeterminate
    owner: str | None
    lease_until: float | None
    version: int
    attempts: int
    output: str | None
    error: str | None
    completed_at: float | None
    expires_at: float | None
    call_event_id: str | None


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event row to append; the store adds `seq` and nothing else."""

    event_id: str
    tool_name: str
    effect: str
    status: str
    created_at: float
    idempotency_key: str | None = None
    input: str | None = None
    input_hash: str | None = None
    output: str | None = None
    rejection_reason: str | None = None
    rule_name: str | None = None
    error: str | None = None
    correlation_id: str | None = None
    parent_event_id: str | None = None
    attempt: int | None = None
    duration_ms: float | None = None
    completed_at: float | None = None
    call_id: str | None = None


EVENT_COLUMNS = tuple(NewEvent.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class Event:
    """One row of the append-only log, as read back."""

    seq: int
    event_id: str
    tool_name: str
    effect: str
    status: str
    created_at: dt.datetime
    idempotency_key: str | None
    input: Any
    input_hash: str | None
    output: Any
    rejection_reason: str | None
    rule_name: str | None
    error: str | None
    correlation_id: str | None
    parent_event_id: str | None
    attempt: int | None
    duration_ms: float | None
    completed_at: dt.datetime | None
    call_id: str | None = None
    row_hash: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any], *, json_as_text: bool) -> Event:
        """Build from a store row. ``json_as_text``: the JSON columns hold JSON text
        (SQLite) rather than decoded values (Postgres JSONB)."""
        values = dict(row)
        if json_as_text:
            for col in ("input", "output"):
                if values[col] is not None:
                    values[col] = json.loads(values[col])
        for col in ("created_at", "completed_at"):
            values[col] = to_datetime(values[col])
        for col in ("event_id", "parent_event_id", "call_id"):
            if values[col] is not None:
                values[col] = str(values[col])  # Postgres returns uuid.UUID
        fields: dict[str, Any] = {name: values.get(name) for name in cls.__dataclass_fields__}
        return cls(**fields)


def to_datetime(value: Any) -> Any:
    """Epoch seconds (SQLite) to an aware UTC datetime; datetimes (Postgres) pass through."""
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    return value


@dataclass(frozen=True, slots=True)
class Approval:
    """A request for a person's decision on one exact call (`agent_tool_approvals`).

    ``binding`` ties it to the tool, the canonical input hash, the idempotency key and the
    fingerprint of the rules in force; a grant is usable once, by a call with the same
    binding, before ``expires_at``."""

    approval_id: str
    binding: str
    tool_name: str
    effect: str
    input_hash: str
    idempotency_key: str | None
    rules_fingerprint: str
    correlation_id: str | None
    call_id: str | None
    input: str | None  # the call's arguments as logged (redacted): what the approver sees
    rule_name: str | None
    reason: str | None
    status: str  # pending | approved | denied | used
    requested_at: float
    decided_at: float | None = None
    decided_by: str | None = None
    note: str | None = None
    expires_at: float | None = None
    used_by: str | None = None
    used_at: float | None = None
    signature: str | None = None
    #: A person's edit of the arguments (``rt.approve(..., arguments=...)``): the canonical
    #: JSON the waiting call runs on instead, and its hash (which the signature covers).
    edited_input: str | None = None
    edited_hash: str | None = None

    def state(self, now: float) -> str:
        """``status``, or ``expired`` for a grant past its time."""
        expired = self.expires_at is not None and self.expires_at <= now
        return "expired" if self.status == "approved" and expired else self.status


APPROVAL_COLUMNS = tuple(Approval.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class SagaRecord:
    """One saga as the store holds it (`agent_tool_sagas`); ``steps`` is JSON text."""

    saga_id: str
    correlation_id: str | None
    call_id: str
    state: (
        str  # open | compensating | completed | compensated | compensation_failed | needs_operator
    )
    owner: str | None
    lease_until: float | None
    steps: str
    version: int
    created_at: float
    updated_at: float
    error: str | None = None


SAGA_COLUMNS = tuple(SagaRecord.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One durable run of an agent as the store holds it (`agent_tool_runs`).

    ``state`` is ``running`` (a worker holds it until ``lease_until``), ``suspended`` (a
    call waits for the person deciding ``approval_id``), ``finished`` or ``failed``.
    ``steps`` counts the journaled steps, ``tokens`` the model tokens spent live and
    ``tokens_saved`` those a resume answered from the journal instead of asking again."""

    session_id: str
    agent: str
    state: str
    steps: int = 0
    tokens: int = 0
    error: str | None = None
    approval_id: str | None = None
    arguments: str = "[]"  # the agent's arguments, as JSON
    output: str | None = None  # what the agent returned, as JSON
    tokens_saved: int = 0
    owner: str | None = None
    lease_until: float | None = None
    version: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0


RUN_COLUMNS = tuple(RunRecord.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class RunResult:
    """What `Runtime.start` and `Runtime.resume` return for one run: ``status`` is
    ``finished`` (``output`` is what the agent returned), ``suspended`` (a call waits for
    the person deciding ``approval_id``) or ``failed`` (``error`` says why)."""

    session_id: str
    status: str
    output: Any = None
    error: str | None = None
    approval_id: str | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """What `Runtime.execute` returns. It never raises for a refusal or a failing handler."""

    status: Status
    output: Any = None
    reason: str | None = None
    rule: str | None = None
    error: str | None = None
    event_id: str | None = None
    key: str | None = None
    input_hash: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: The output as the log records it (canonical JSON, personal fields redacted): what
    #: an identical call answered from the record returns, and what the model reads.
    output_json: str | None = None
    #: For ``failed``: whether calling again with the same arguments runs the tool again.
    retryable: bool = False
    #: For ``awaiting_approval``: the request a person decides (`rt.approve(approval_id)`).
    approval_id: str | None = None

    @property
    def ok(self) -> bool:
        """True when the output is the effect's real result (executed now or earlier)."""
        return self.status in (Status.EXECUTED, Status.CACHED)

    def for_model(self) -> ModelReply:
        """What the model should read about this call, for every status."""
        return reply_for(self)
