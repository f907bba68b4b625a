"""The decisions of guards (`dar.guards.Budget`, `dar.guards.Similar`): pure code.

A guard reads the earlier calls of its tool in one scope (the values of its ``per`` or
``same`` fields, the session) inside its window. The store serializes the calls of a scope
and hands `decide` the rows it read; `decide` answers whether this call goes on, and with
which share. Whether an earlier row still counts is decided here too (`counts`), so a
crashed call's share stops counting once its lease is over with no claim running for it.
"""

from __future__ import annotations

import array
import base64
import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dar._core import canonical_json, sha256_hex_of
from dar.core.ids import new_id
from dar.core.nearness import Earlier, first_duplicate
from dar.core.ops import GuardDecision, GuardRow, GuardScan
from dar.guards import SESSION, Budget, Guard, Similar, window_text

HELD, USED, RELEASED = "held", "used", "released"
#: A claim in these states stands for a call that ran or may still be running.
LIVE_CLAIMS = frozenset({"running", "done", "indeterminate"})


@dataclass(frozen=True, slots=True)
class Pending:
    """This call as its guards see it: its scans, and what it would add to each."""

    tool_name: str
    key: str | None
    event_id: str
    now: float
    lease: float
    guards: tuple[Guard, ...]
    scans: tuple[GuardScan, ...]
    amounts: tuple[float, ...]
    texts: tuple[str | None, ...]
    vectors: tuple[tuple[float, ...] | None, ...]
    labels: tuple[str, ...]
    #: Names of Similar guards whose hold a person has approved for this very call.
    approved: frozenset[str] = frozenset()


class GuardInputError(ValueError):
    """A guarded field whose value the guard cannot read (``$.amount`` is not a number)."""


def field_value(guard_field: str, arguments: dict[str, Any], correlation_id: str | None) -> Any:
    """The value of one scoping field: ``"session"`` is the call's correlation id."""
    if guard_field == SESSION and guard_field not in arguments:
        return correlation_id
    return arguments.get(guard_field)


def scope_of(
    tool_name: str, guard: Guard, arguments: dict[str, Any], correlation_id: str | None
) -> tuple[str, str]:
    """The scope's hash (what the store keys rows and locks by) and how a reason names it."""
    names = guard.per if isinstance(guard, Budget) else guard.same
    values = [field_value(name, arguments, correlation_id) for name in names]
    session = isinstance(guard, Similar) and guard.scope == "session"
    scoped: list[Any] = [tool_name, guard.name, values, correlation_id if session else None]
    digest = sha256_hex_of(canonical_json(scoped))
    label = ", ".join(f"{n} {v}" for n, v in zip(names, values, strict=True))
    return digest, label


def amount_of(guard: Budget, arguments: dict[str, Any]) -> float:
    """What this call adds to a budget: 1 for a count, else its ``of`` field."""
    if guard.of is None:
        return 1.0
    value = arguments.get(guard.of)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GuardInputError(f"at $.{guard.of}: {guard.name} needs a number, not {value!r}")
    if value < 0:
        raise GuardInputError(f"at $.{guard.of}: {guard.name} needs a number >= 0, not {value!r}")
    return float(value)


def text_of(guard: Similar, arguments: dict[str, Any]) -> str:
    value = arguments.get(guard.field)
    if not isinstance(value, str):
        raise GuardInputError(f"at $.{guard.field}: {guard.name} needs text, not {value!r}")
    return value


def counts(row: GuardRow, now: float, key: str | None) -> bool:
    """Whether an earlier share still counts against its scope. A held share of this
    call's key is its own (it waited for a person and is back to run), or a concurrent
    identical call's, of which only one will take the key: neither counts. An executed
    call of the same input (its key answered from the record for a window only) does."""
    if row.state == USED:
        return True
    if row.state != HELD or (key is not None and row.idempotency_key == key):
        return False
    held = row.held_until is None or row.held_until > now
    return held or row.claim_state in LIVE_CLAIMS


def decide(pending: Pending, found: Sequence[Sequence[GuardRow]]) -> GuardDecision:
    """Judge a call against the rows its scans found; when it may go on, its shares."""
    flags: list[tuple[str, str]] = []
    for i, guard in enumerate(pending.guards):
        live = [row for row in found[i] if counts(row, pending.now, pending.key)]
        if isinstance(guard, Budget):
            over = over_budget(guard, pending, i, live)
            if over is not None:
                return GuardDecision(refusal=(guard.name, "reject", over))
            continue
        repeat = repeated(guard, pending, i, live)
        if repeat is None or guard.name in pending.approved:
            continue
        if guard.then == "flag":
            flags.append((guard.name, repeat))
        else:
            return GuardDecision(refusal=(guard.name, guard.then, repeat))
    waited = any(waiting(row, pending.key) for rows in found for row in rows)
    supersede = pending.key if waited else None
    return GuardDecision(rows=shares(pending), flags=tuple(flags), supersede=supersede)


def waiting(row: GuardRow, key: str | None) -> bool:
    """Whether ``row`` is the share this call kept while a person decided (its new share
    replaces it)."""
    return (
        key is not None
        and row.idempotency_key == key
        and row.state == HELD
        and (row.held_until is None)
    )


def over_budget(guard: Budget, pending: Pending, i: int, live: list[GuardRow]) -> str | None:
    """Why the call would go over the budget, with the numbers; None when it fits."""
    used = sum(row.amount for row in live)
    need = pending.amounts[i]
    if used + need <= guard.limit:
        return None
    unit = "" if guard.of else " calls"
    where = f" for {pending.labels[i]}" if pending.labels[i] else ""
    return (
        f"{used:g} of {guard.limit:g}{unit} used in the last {window_text(guard.within)}"
        f"{where}; this {pending.tool_name} needs {need:g}"
        + (f" (at most {max(guard.limit - used, 0):g} is left)" if guard.of else "")
    )


def repeated(guard: Similar, pending: Pending, i: int, live: list[GuardRow]) -> str | None:
    """Why the call says again what an earlier one said; None when it does not."""
    text, vector = pending.texts[i], pending.vectors[i]
    assert text is not None and vector is not None
    earlier = [
        Earlier(row.event_id, at(row.created_at), row.text, row.vector)
        for row in live
        if row.text is not None and row.vector is not None and len(row.vector) == len(vector)
    ]
    duplicate = first_duplicate(text, vector, earlier, guard.threshold)
    return None if duplicate is None else duplicate.reason(guard.field)


def at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def shares(pending: Pending) -> tuple[GuardRow, ...]:
    """This call's rows: held for a lease (a crashed call's stop counting after it)."""
    return tuple(
        GuardRow(
            reservation_id=new_id(),
            tool_name=pending.tool_name,
            guard=scan.guard,
            scope=scan.scope,
            amount=pending.amounts[i],
            text=pending.texts[i],
            vector=pending.vectors[i],
            idempotency_key=pending.key,
            event_id=pending.event_id,
            created_at=pending.now,
            state=HELD,
            held_until=pending.now + pending.lease,
        )
        for i, scan in enumerate(pending.scans)
    )


def vector_text(vector: tuple[float, ...] | None) -> str | None:
    """How a vector is stored: its float32 values, little-endian, in base64 (a quarter of
    the JSON, and read back without parsing numbers: a scope's history is read at every
    call). float32 changes a cosine in its seventh digit, far below any threshold's."""
    if vector is None:
        return None
    packed = array.array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def vector_from(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    packed = array.array("f")
    packed.frombytes(base64.b64decode(text))
    if sys.byteorder == "big":
        packed.byteswap()
    return tuple(packed)
