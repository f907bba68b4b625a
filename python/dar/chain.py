"""The tamper-evident hash chain of the event log, as pure functions.

Each row's ``row_hash`` is ``sha256(previous row_hash || content_hash(row))`` within its
correlation id (a row without one chains within its call). ``content_hash`` is the SHA-256 of the
row's RFC 8785 canonical JSON, computed by the Rust core. The same function runs when a row
is written and when `dar verify` reads it back, so it works on *decoded* values: JSON columns
as parsed values (an integer beyond 2**53 stands for the double it came from, as JSONB
returns `1e+21` as `1000000000000000000000`) and times as whole microseconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dar._core import canonical_json, sha256_hex_of

MAX_SAFE = 2**53 - 1

#: The columns a row's content hash covers: all but `seq` and `row_hash` itself.
CHAINED = (
    "event_id",
    "call_id",
    "idempotency_key",
    "tool_name",
    "effect",
    "input",
    "input_hash",
    "output",
    "status",
    "rejection_reason",
    "rule_name",
    "error",
    "correlation_id",
    "parent_event_id",
    "attempt",
    "duration_ms",
    "created_at",
    "completed_at",
)


def micros(value: Any) -> int | None:
    """Whole microseconds since the epoch, from Unix seconds or an aware datetime."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return (value - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(
            microseconds=1
        )
    return round(float(value) * 1_000_000)


def as_json_value(value: Any) -> Any:
    """Integers beyond the exact range stand for the doubles they were written from."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -MAX_SAFE <= value <= MAX_SAFE else float(value)
    if isinstance(value, list):
        return [as_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json_value(v) for k, v in value.items()}
    return value


_PREFIXES = {col: b'"' + col.encode() + b'":' for col in CHAINED}
#: Canonical member order: the names are plain ASCII, so UTF-16 order is byte order.
_ORDER = sorted(CHAINED)


def content_hash(row: Mapping[str, Any], *, json_as_text: bool = False) -> str:
    """SHA-256 of the row's chained columns, as RFC 8785 canonical JSON.

    ``row`` holds decoded values (times as Unix seconds or datetimes). With
    ``json_as_text`` its ``input``/``output`` are canonical JSON text already (as the runtime
    writes them) and are used as they are, which is byte-for-byte what canonicalizing their
    decoded values gives. The object is assembled member by member, which equals
    ``canonical_json`` of the whole row because the member names need no escaping.
    """
    parts = []
    for col in _ORDER:
        value = row.get(col)
        if col in ("input", "output"):
            if json_as_text and value is not None:
                piece = value.encode() if isinstance(value, str) else bytes(value)
            else:
                piece = canonical_json(as_json_value(value))
        else:
            if col in ("created_at", "completed_at"):
                value = micros(value)
            elif col in ("event_id", "call_id", "parent_event_id") and value is not None:
                value = str(value)
            piece = canonical_json(value)
        parts.append(_PREFIXES[col] + piece)
    return sha256_hex_of(b"{" + b",".join(parts) + b"}")


def link(previous: str | None, content: str) -> str:
    """The next head: ``sha256(previous || content)`` over the raw digest bytes."""
    return sha256_hex_of(bytes.fromhex(previous or "") + bytes.fromhex(content))


def chain_key(correlation_id: str | None, call_id: str | None) -> str:
    """Which chain a row belongs to: its session's, or — with no correlation id — its own
    call's, so that uncorrelated writers never share (and wait on) one chain head."""
    return correlation_id if correlation_id is not None else f"call:{call_id}"


#: The same, in SQL (``call_id`` falls back to ``event_id`` for rows outside any call).
CHAIN_KEY_SQL = "coalesce(correlation_id, 'call:' || coalesce({call_id}, {event_id}))"


@dataclass(frozen=True, slots=True)
class Broken:
    """The first row whose hash does not follow from the rows before it."""

    correlation_id: str
    seq: int
    event_id: str
    reason: str


def verify_chain(
    correlation_id: str,
    rows: Iterable[Mapping[str, Any]],
    start: str | None = None,
    head: str | None = None,
) -> tuple[int, Broken | None]:
    """Check one chain (rows in ``seq`` order). ``start``: the hash before the first row
    (a purge checkpoint); ``head``: the recorded head, which the last row must match.
    Returns how many rows were checked and the first broken link, if any."""
    previous = start
    n = 0
    last: Mapping[str, Any] | None = None
    for row in rows:
        expected = link(previous, content_hash(row))
        if row.get("row_hash") != expected:
            what = (
                "no hash (written before the chain existed, or stripped)"
                if row.get("row_hash") is None
                else "content or order changed"
            )
            return n, Broken(correlation_id, int(row["seq"]), str(row["event_id"]), what)
        previous = expected
        last = row
        n += 1
    if head is not None and previous != head:
        seq = int(last["seq"]) if last is not None else 0
        eid = str(last["event_id"]) if last is not None else ""
        return n, Broken(
            correlation_id,
            seq,
            eid,
            "rows after this one were removed (the chain head is further on)",
        )
    return n, None
