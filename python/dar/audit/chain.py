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

from dar._core import canonical_json, input_hash, input_hash_from_text, sha256_hex_of

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


#: The columns that are JSON documents: written as canonical JSON text, read back decoded.
_JSON_COLUMNS = ("input", "output")
_PLAIN = tuple(col for col in CHAINED if col not in _JSON_COLUMNS)
_IDS = ("event_id", "call_id", "parent_event_id")
_TIMES = ("created_at", "completed_at")


def _plain_members(row: Mapping[str, Any]) -> dict[str, Any]:
    """The chained columns but the JSON ones, as the hash covers them: times as whole
    microseconds, ids as text (Postgres returns ``uuid.UUID``)."""
    plain = {col: row.get(col) for col in _PLAIN}
    for col in _TIMES:
        plain[col] = micros(plain[col])
    for col in _IDS:
        value = plain[col]
        if value is not None and type(value) is not str:
            plain[col] = str(value)
    return plain


def content_hash(row: Mapping[str, Any], *, json_as_text: bool = False) -> str:
    """SHA-256 of the row's chained columns, as RFC 8785 canonical JSON — canonicalized and
    hashed as one document by the Rust core, so no Python code decides the canonical form.

    ``row`` holds decoded values (times as Unix seconds or datetimes). With
    ``json_as_text`` its ``input``/``output`` are JSON text already (as the runtime writes
    them): the row is sent to the core as JSON text with those two spliced in verbatim, so
    they are not decoded and encoded again on every insert. Without it (``dar verify``
    reading rows back) the decoded row is hashed as it is.
    """
    plain = _plain_members(row)
    if not json_as_text:
        for col in _JSON_COLUMNS:
            plain[col] = as_json_value(row.get(col))
        return input_hash(plain)
    # The core writes the plain members (its own encoder: fast, and any valid spelling
    # canonicalizes the same), the JSON columns are spliced in, and the core then parses
    # and canonicalizes the whole row (member order included) and hashes it.
    pieces = [canonical_json(plain)[:-1]]
    for col in _JSON_COLUMNS:
        value = row.get(col)
        doc = b"null" if value is None else value.encode() if isinstance(value, str) else value
        pieces.append(b',"' + col.encode() + b'":' + bytes(doc))
    pieces.append(b"}")
    return input_hash_from_text(b"".join(pieces))


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
