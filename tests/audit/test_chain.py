"""The hash chain: each row's content hash (computed by the Rust core as one canonical document,
the same digest for every row already stored) links to the previous row of its session, and
`verify` finds the first broken link."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from dar._core import canonical_json, sha256_hex_of
from dar.audit.chain import CHAINED, as_json_value, content_hash, micros
from tests.support.calls import MakeRuntime
from tests.support.sessions import check, covered, record_session, send_message, tamper

_PREFIXES = {col: b'"' + col.encode() + b'":' for col in CHAINED}


_ORDER = sorted(CHAINED)


def legacy_content_hash(row: Mapping[str, Any], *, json_as_text: bool = False) -> str:
    """The content hash as it was computed before (assembled in Python)."""
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


TEXTS = [
    "",
    "plain",
    "naïve café",
    "日本語テキスト",
    "emoji 🎉🚀",
    'quote " back \\ slash',
    "ctl \x1b[2J \x07 \n\t",
    "\u2028\u2029",
    "\U0001d518\U0001d52b\U0001d526 astral",
    "é" * 300,
]


FLOATS = [
    0.0,
    -0.0,
    1.5,
    1e-7,
    5e-324,
    1.7976931348623157e308,
    1e21,
    123456.789,
    -2.5e-300,
    0.1 + 0.2,
    9007199254740993.0,
]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return rng.choice(TEXTS)
    if kind == 1:
        return rng.choice(FLOATS)
    if kind == 2:
        return rng.choice([0, 1, -1, 2**53 - 1, -(2**53) + 1, 2**60, 10**21, 42])
    if kind == 3:
        return rng.choice([None, True, False])
    if kind == 4:
        return rng.randrange(-1000, 1000)
    if kind == 5:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(TEXTS) + str(i): _value(rng, depth + 1) for i in range(rng.randrange(4))}


def _row(rng: random.Random) -> dict[str, Any]:
    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.3 else value

    created = 1_700_000_000 + rng.random() * 1e8
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "call_id": maybe(uuid.UUID(int=rng.getrandbits(128))),
        "idempotency_key": maybe(rng.choice(TEXTS) + "k"),
        "tool_name": rng.choice(TEXTS) or "t",
        "effect": rng.choice(["read_only", "mutate_local", "irreversible", ""]),
        "input": maybe(_value(rng)),
        "input_hash": maybe(f"{rng.getrandbits(256):064x}"),
        "output": maybe(_value(rng)),
        "status": rng.choice(["started", "executed", "cached", "rejected"]),
        "rejection_reason": maybe(rng.choice(TEXTS)),
        "rule_name": maybe(rng.choice(TEXTS)),
        "error": maybe(rng.choice(TEXTS)),
        "correlation_id": maybe(rng.choice(TEXTS)),
        "parent_event_id": maybe(str(uuid.UUID(int=rng.getrandbits(128)))),
        "attempt": maybe(rng.randrange(1, 5)),
        "duration_ms": maybe(rng.choice(FLOATS[:9]) if rng.random() < 0.5 else rng.random() * 99),
        "created_at": round(created, 6)
        if rng.random() < 0.5
        else dt.datetime.fromtimestamp(round(created, 6), tz=dt.timezone.utc),
        "completed_at": maybe(round(created + 0.25, 6)),
    }


@pytest.mark.parametrize("seed", range(4))
def test_the_core_gives_every_stored_digest_unchanged(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(500):
        row = _row(rng)
        as_text = dict(row)
        for col in ("input", "output"):
            if row[col] is not None:
                as_text[col] = canonical_json(as_json_value(row[col])).decode()
        expected = legacy_content_hash(as_text, json_as_text=True)
        assert content_hash(as_text, json_as_text=True) == expected, row
        assert legacy_content_hash(row) == expected
        assert content_hash(row) == expected, row
        # Postgres hands JSONB back decoded from its own text: the same digest.
        decoded = {**row, **{c: json.loads(as_text[c]) for c in ("input", "output") if row[c]}}
        assert content_hash(decoded) == expected


@pytest.mark.parametrize("edit", ["update", "delete-middle", "delete-last"])
def test_verify_finds_the_first_broken_link(make_runtime: MakeRuntime, edit: str) -> None:
    rt = make_runtime(rules=[covered])
    record_session(rt, "s-1")
    record_session(rt, "s-2")
    assert check(rt).ok and check(rt).rows == len(rt.events())
    rows = rt.events(correlation_id="s-1")
    target = rows[2] if edit != "delete-last" else rows[-1]
    if edit == "update":
        tamper(rt, f"UPDATE agent_tool_events SET status = 'rejected' WHERE seq = {target.seq}")
    else:
        tamper(rt, f"DELETE FROM agent_tool_events WHERE seq = {target.seq}")
    report = check(rt)
    assert not report.ok
    (broken,) = report.broken  # only the edited session
    assert broken.correlation_id == "s-1"
    if edit == "update":
        assert broken.seq == target.seq
    elif edit == "delete-middle":
        assert broken.seq == rows[3].seq  # the row after the hole no longer follows
    else:
        assert broken.seq == rows[-2].seq and "removed" in broken.reason
    assert check(rt, only="s-2").ok


def test_chain_survives_concurrent_sessions(make_runtime: MakeRuntime) -> None:
    import threading

    rt = make_runtime()
    threads = [
        threading.Thread(
            target=lambda i=i: [
                rt.execute(
                    send_message, {"order": f"{i}-{j}", "text": "x"}, correlation_id=f"c-{i % 3}"
                )
                for j in range(10)
            ]
        )
        for i in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = check(rt)
    assert report.ok and report.rows == 120
