"""A person's decision on a call, as plans the drivers run: approve, deny, list, wait.

The decision itself is one conditional write (only a pending request can be decided, so two
approvers racing decide it once) with its row in the log; the call it unblocks is decided
by the core (`dar.core.decide.seek_approval`) when it is made again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from dar._core import sha256_hex_of
from dar.core.decide import canonical_input, coerced, edit_summary, rules_for
from dar.core.grants import signature
from dar.core.ids import new_id
from dar.core.ops import CheckRule, DecideApproval, GetApproval, ListApprovals, Ops, Wait
from dar.core.rows import storable, when
from dar.core.states import EventKind
from dar.effects import Status
from dar.errors import ConfigurationError
from dar.records import Approval, NewEvent, Result
from dar.rules import Deny, Rule, RuleContext
from dar.signature import ArgumentError
from dar.tools import Tool

#: Checks a person's edit of a request (its canonical JSON) before anything is written, and
#: returns the canonical JSON to record; raises to refuse it.
EditCheck = Callable[[Approval, bytes], Ops[bytes]]

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
    arguments: Any = None,
    check: EditCheck | None = None,
) -> Ops[Approval]:
    """Approve or deny a pending request; raises when there is none to decide.

    ``arguments`` (a mapping or JSON text) approve the call edited to them: the waiting
    call runs on them instead, once ``check`` (the tool's schema and rules, when the
    decider has the tool; else `unchecked`) lets them through. Arguments equal to the
    request's are a plain approval."""
    if not isinstance(by, str) or not by.strip():
        raise ConfigurationError("say who decides: by='alice'")
    if approve:
        check_ttl(ttl)
    elif arguments is not None:
        raise ConfigurationError("a denial takes no arguments: approve with an edit instead")
    canon = None if arguments is None else canonical_input(arguments)
    found: Approval | None = yield GetApproval(approval_id)
    if found is None:
        raise KeyError(f"no approval {approval_id!r}")
    if found.state(now) != "pending":
        raise ConfigurationError(f"approval {approval_id} is {found.state(now)}, not pending")
    edited = None
    if canon is not None:
        canon = yield from (check or unchecked)(found, canon)
        edited = None if sha256_hex_of(canon) == found.input_hash else canon.decode("utf-8")
    edited_hash = None if edited is None else sha256_hex_of(edited.encode("utf-8"))
    expires = now + ttl if approve else None
    signed = (
        signature(secret, approval_id, found.binding, expires, edited_hash)
        if approve and secret
        else None
    )
    decided: Approval | None = yield DecideApproval(
        approval_id,
        approve,
        by,
        note,
        now,
        expires,
        signed,
        decision_row(found, approve, by, note, now, edited),
        edited,
        edited_hash,
    )
    if decided is None:
        raise ConfigurationError(f"approval {approval_id} was decided by someone else meanwhile")
    return decided


def decision_row(
    found: Approval,
    approve: bool,
    by: str,
    note: str | None,
    now: float,
    edited: str | None = None,
) -> NewEvent:
    """The decision, as a row of the call that asked (its session, call id and key). An
    edit is said path by path, and the row holds the edited input and its hash (the
    request's row holds the input as asked)."""
    said = f"approved by {by}" if approve else f"denied by {by}"
    if edited is not None:
        said += f" with an edit: {edit_summary(found.input, edited)}"
    said += f" (approval {found.approval_id})" + (f": {note}" if note else "")
    return NewEvent(
        event_id=new_id(),
        tool_name=found.tool_name,
        effect=found.effect,
        status=(EventKind.APPROVED if approve else EventKind.DENIED).value,
        created_at=when(now),
        idempotency_key=found.idempotency_key,
        input=edited,
        input_hash=found.input_hash if edited is None else sha256_hex_of(edited.encode("utf-8")),
        rejection_reason=storable(said),
        rule_name=found.rule_name,
        correlation_id=found.correlation_id,
        call_id=found.call_id,
    )


def unchecked(found: Approval, canon: bytes) -> Ops[bytes]:
    """An edit by a decider without the tool (`dar approve` without ``--app``): recorded as
    given, and checked against the schema and the rules when the call uses it. A request
    whose record shows redacted values is not editable here: its tool redacts, and the
    edit would be stored with the personal values in it."""
    if found.input is None or '"redacted:' in found.input:
        raise ConfigurationError(
            f"approval {found.approval_id}: the request's arguments are redacted or not "
            f"recorded; tool {found.tool_name!r} cannot be edited here"
        )
    return canon
    yield  # a plan of no operations


def checked(
    tool: Tool[Any], rules: tuple[Rule, ...], events_reader: Callable[..., Any]
) -> EditCheck:
    """An edit held to what a call of ``tool`` is held to: its schema (the error names the
    JSON path) and its rules, where a ``Deny`` refuses the edit and a ``NeedsApproval`` is
    what the person is approving."""

    def check(found: Approval, canon: bytes) -> Ops[bytes]:
        if tool.redactor is not None:
            raise ConfigurationError(
                f"tool {tool.name!r} redacts personal fields, so its calls cannot be edited "
                "at approval (the edit would be stored unredacted): deny it and ask again"
            )
        try:
            if tool.coerce:
                canon = coerced(tool, canon)
            tool.signature.validate(canon.decode("utf-8"), coerce=tool.coerce)
        except ArgumentError as exc:
            raise ConfigurationError(f"invalid arguments: {exc}") from None
        ctx = RuleContext(tool.name, tool.effect, found.correlation_id, events_reader)
        for r in rules_for(tool, rules):
            verdict = yield CheckRule(r, json.loads(canon), ctx)
            if isinstance(verdict, Deny):
                raise ConfigurationError(
                    f"the edit is refused by the rule {r.name!r}: {verdict.reason}"
                )
        return canon

    return check


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
