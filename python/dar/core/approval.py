"""A person's decision on a call, as plans the drivers run: approve, deny, list, wait.

The decision itself is one conditional write (only a pending request can be decided, so two
approvers racing decide it once) with its row in the log; the call it unblocks is decided
by the core (`dar.core.decide.seek_approval`) when it is made again.
"""

from __future__ import annotations

from collections.abc import Callable

from dar.core.grants import signature
from dar.core.ids import new_id
from dar.core.ops import DecideApproval, GetApproval, ListApprovals, Ops, Wait
from dar.core.rows import storable, when
from dar.core.states import EventKind
from dar.effects import Status
from dar.errors import ConfigurationError
from dar.records import Approval, NewEvent, Result

STATES = ("pending", "approved", "denied", "expired", "used")
#: The longest a grant may stay usable: a year. Longer (or infinite) is refused before
#: anything is written: an expiry must be a date every store can hold.
MAX_TTL = 366 * 24 * 3600.0
POLL = 0.25  # seconds between looks where the store cannot signal (SQLite)


def check_ttl(ttl: object) -> None:
    """A grant's lifetime: positive seconds, at most `MAX_TTL`."""
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= MAX_TTL:
        raise ConfigurationError(
            f"ttl must be positive seconds, at most {MAX_TTL:.0f} (a year), not {ttl!r}"
        )


def decide(
    approval_id: str,
    *,
    approve: bool,
    by: str,
    note: str | None,
    ttl: float,
    now: float,
    secret: str | None,
) -> Ops[Approval]:
    """Approve or deny a pending request; raises when there is none to decide."""
    if not isinstance(by, str) or not by.strip():
        raise ConfigurationError("say who decides: by='alice'")
    if approve:
        check_ttl(ttl)
    found: Approval | None = yield GetApproval(approval_id)
    if found is None:
        raise KeyError(f"no approval {approval_id!r}")
    if found.state(now) != "pending":
        raise ConfigurationError(f"approval {approval_id} is {found.state(now)}, not pending")
    expires = now + ttl if approve else None
    signed = signature(secret, approval_id, found.binding, expires) if approve and secret else None
    decided: Approval | None = yield DecideApproval(
        approval_id,
        approve,
        by,
        note,
        now,
        expires,
        signed,
        decision_row(found, approve, by, note, now),
    )
    if decided is None:
        raise ConfigurationError(f"approval {approval_id} was decided by someone else meanwhile")
    return decided


def decision_row(found: Approval, approve: bool, by: str, note: str | None, now: float) -> NewEvent:
    """The decision, as a row of the call that asked (its session, call id and key)."""
    said = f"approved by {by}" if approve else f"denied by {by}"
    said += f" (approval {found.approval_id})" + (f": {note}" if note else "")
    return NewEvent(
        event_id=new_id(),
        tool_name=found.tool_name,
        effect=found.effect,
        status=(EventKind.APPROVED if approve else EventKind.DENIED).value,
        created_at=when(now),
        idempotency_key=found.idempotency_key,
        input_hash=found.input_hash,
        rejection_reason=storable(said),
        rule_name=found.rule_name,
        correlation_id=found.correlation_id,
        call_id=found.call_id,
    )


def recorded(approval_id: str) -> Ops[Approval]:
    """A request and its decision as recorded; raises when there is none."""
    found: Approval | None = yield GetApproval(approval_id)
    if found is None:
        raise KeyError(f"no approval {approval_id!r} in the record")
    return found


def listing(status: str | None, correlation_id: str | None, now: float) -> Ops[list[Approval]]:
    if status is not None and status not in STATES:
        raise ConfigurationError(f"status must be one of {', '.join(STATES)}, not {status!r}")
    found: list[Approval] = yield ListApprovals(status, correlation_id, now)
    return found


def waiting(
    call: Callable[[], Ops[Result]],
    seconds: float,
    clock: Callable[[], float],
) -> Ops[Result]:
    """Make the call; while it waits for approval, wait (woken by the decision on
    Postgres, polling on SQLite) up to ``seconds``, then make it again once decided."""
    result = yield from call()
    waited = 0.0
    while result.status is Status.AWAITING_APPROVAL and waited < seconds:
        assert result.approval_id is not None
        waited += yield Wait(result.key or "", min(POLL, seconds - waited))
        found: Approval | None = yield GetApproval(result.approval_id)
        if found is not None and found.state(clock()) != "pending":
            result = yield from call()
    return result
