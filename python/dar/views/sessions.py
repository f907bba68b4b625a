"""What `dar view`, `dar report`, `dar ui` and `dar diff` show, computed once.

The terminal app, the HTML report and the web app render the same model, so a call can
never look verified in one and broken in another. The model holds the log's text as it
is (it is attacker-controlled: tool inputs, reasons, errors); each renderer escapes it for
its own medium. Chain badges come from `dar.audit.postmortem.verify`, the code of `dar verify`.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from dar._core import canonical_json, sha256_hex_of
from dar.audit.chain import Broken, as_json_value
from dar.audit.postmortem import CallNode, call_tree, verify
from dar.core.ops import LogFilter
from dar.errors import DarError
from dar.records import Event, to_datetime
from dar.store import AdminStore
from dar.store.sql import SessionFilter, SessionRow

#: Statuses a person investigating an incident looks for first.
REFUSED = ("rejected", "denied")
#: How many cached answers from other sessions are looked up (one query each).
MAX_ORIGIN_LOOKUPS = 200
#: Rows whose answer an identical call may reuse: what `cached` answers come from.
ORIGIN_STATUSES = ("executed", "resolved")


def _iso(value: Any) -> str | None:
    moment = to_datetime(value)
    return None if moment is None else moment.isoformat()


@dataclass(frozen=True)
class SessionSummary:
    """One line of the sessions list."""

    session_id: str
    events: int
    first_at: str | None
    last_at: str | None
    last_seq: int
    refused: int
    failed: int
    indeterminate: int

    @classmethod
    def of(cls, row: SessionRow) -> SessionSummary:
        return cls(
            row.session_id,
            row.events,
            _iso(row.first_at),
            _iso(row.last_at),
            row.last_seq,
            row.refused,
            row.failed,
            row.indeterminate,
        )

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def list_sessions(store: AdminStore, filter: SessionFilter | None = None) -> list[SessionSummary]:
    """Sessions, newest activity first, from the database's own aggregates."""
    return [SessionSummary.of(row) for row in store.sessions(filter or SessionFilter())]


@dataclass
class RowView:
    """One row of the log, with its chain badge: ``verified`` (its hash follows from the
    rows before it), ``broken`` (the first link that does not) or ``unverified`` (after a
    broken link nothing can be vouched for)."""

    seq: int
    event_id: str
    status: str
    at: str
    badge: str
    attempt: int | None = None
    rule: str | None = None
    reason: str | None = None
    error: str | None = None
    note: str | None = None  # why the badge is not `verified`

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Origin:
    """The `executed` row a `cached` answer came from (maybe in another session)."""

    seq: int
    session_id: str | None
    call_id: str | None
    at: str
    output: Any

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class CallView:
    """One call (or saga) of a session, with what a detail pane shows."""

    call_id: str
    tool: str
    effect: str
    status: str
    started_at: str
    offset_ms: float  # from the session's first row: where its timeline bar starts
    duration_ms: float | None
    key: str | None
    rule: str | None
    reason: str | None
    error: str | None
    input: Any
    input_hash: str | None
    output: Any
    attempts: int
    badge: str
    depth: int
    rows: list[RowView]
    origin: Origin | None = None
    children: list[CallView] = field(default_factory=list)

    @property
    def is_saga(self) -> bool:
        return any(r.status.startswith("saga_") for r in self.rows)

    @property
    def is_run(self) -> bool:
        """A durable run: its journal (model turns, tool calls, steps) is its rows."""
        return any(r.status.startswith("run_") for r in self.rows)

    @property
    def label(self) -> str:
        """How a list names it: the tool, or the saga or run it is."""
        if self.is_saga:
            return "saga " + (self.key or "").removeprefix("saga:")
        if self.is_run:
            return "run " + self.tool
        if any(r.status == "speculated" for r in self.rows):
            return "search"
        return self.tool

    def walk(self) -> Iterator[CallView]:
        yield self
        for child in self.children:
            yield from child.walk()

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("rows", "children", "origin")}
        out["saga"] = self.is_saga
        out["run"] = self.is_run
        out["label"] = self.label
        out["rows"] = [r.as_dict() for r in self.rows]
        out["origin"] = None if self.origin is None else self.origin.as_dict()
        out["children"] = [c.as_dict() for c in self.children]
        return out


@dataclass
class SessionView:
    """A session: its calls as a tree (in the order they happened), and its chain."""

    session_id: str
    events: int
    first_at: str | None
    last_at: str | None
    span_ms: float
    chain_ok: bool
    broken: list[Broken]
    calls: list[CallView]

    def walk(self) -> Iterator[CallView]:
        for call in self.calls:
            yield from call.walk()

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for call in self.walk():
            found[call.status] = found.get(call.status, 0) + 1
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "events": self.events,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "span_ms": self.span_ms,
            "chain": {
                "ok": self.chain_ok,
                "broken": [_broken(b) for b in self.broken],
            },
            "counts": self.counts(),
            "calls": [c.as_dict() for c in self.calls],
        }


def _broken(b: Broken) -> dict[str, Any]:
    return {"chain": b.correlation_id, "seq": b.seq, "event_id": b.event_id, "reason": b.reason}


def _badges(events: Sequence[Event], broken: list[Broken]) -> dict[int, tuple[str, str | None]]:
    """Per row seq: its badge and why. `verify` names the first broken link of a chain;
    the rows after it follow from an edited history, so none of them is vouched for."""
    first = min((b.seq for b in broken if b.seq), default=None)
    reasons = {b.seq: b.reason for b in broken}
    badges: dict[int, tuple[str, str | None]] = {}
    for ev in events:
        if first is None or ev.seq < first:
            badges[ev.seq] = ("verified", None)
        elif ev.seq == first:
            badges[ev.seq] = ("broken", reasons.get(ev.seq))
        else:
            badges[ev.seq] = ("unverified", f"after the broken link at seq {first}")
    return badges


class _Builder:
    """Turns `CallNode`s into `CallView`s with badges and the origins of cached answers."""

    def __init__(
        self,
        events: Sequence[Event],
        badges: dict[int, tuple[str, str | None]],
        store: AdminStore | None,
    ) -> None:
        self.start = events[0].created_at
        self.badges = badges
        self.store = store
        self.lookups = 0
        self.origins: dict[str, Event] = {}
        for ev in events:
            if ev.idempotency_key and ev.status in ORIGIN_STATUSES:
                self.origins.setdefault(ev.idempotency_key, ev)

    def row(self, ev: Event) -> RowView:
        badge, note = self.badges.get(ev.seq, ("unverified", "not in this session's chain"))
        return RowView(
            ev.seq,
            ev.event_id,
            ev.status,
            ev.created_at.isoformat(),
            badge,
            ev.attempt,
            ev.rule_name,
            ev.rejection_reason,
            ev.error,
            note,
        )

    def origin(self, key: str | None) -> Origin | None:
        if key is None:
            return None
        ev = self.origins.get(key)
        if ev is None and self.store is not None and self.lookups < MAX_ORIGIN_LOOKUPS:
            self.lookups += 1
            found = [
                e for e in self.store.events(LogFilter(key=key)) if e.status in ORIGIN_STATUSES
            ]
            if found:
                ev = self.origins[key] = found[0]
        if ev is None:
            return None
        return Origin(ev.seq, ev.correlation_id, ev.call_id, ev.created_at.isoformat(), ev.output)

    def call(self, node: CallNode, depth: int) -> CallView:
        out, first = node.outcome, node.first
        rows = [self.row(ev) for ev in node.rows]
        order = {"verified": 0, "unverified": 1, "broken": 2}
        badge = max((r.badge for r in rows), key=order.__getitem__)
        reasoned = next((r for r in reversed(node.rows) if r.rejection_reason), None)
        view = CallView(
            call_id=node.call_id,
            tool=first.tool_name if first.effect == "run" else out.tool_name,
            effect=out.effect,
            status=out.status,
            started_at=first.created_at.isoformat(),
            offset_ms=(first.created_at - self.start) / dt.timedelta(milliseconds=1),
            duration_ms=node.duration_ms,
            key=out.idempotency_key,
            rule=(reasoned or out).rule_name,
            reason=(reasoned or out).rejection_reason,
            error=out.error,
            input=first.input,
            input_hash=first.input_hash,
            output=next((r.output for r in reversed(node.rows) if r.output is not None), None),
            attempts=max((r.attempt or 0 for r in node.rows), default=0),
            badge=badge,
            depth=depth,
            rows=rows,
        )
        if out.status == "cached":
            view.origin = self.origin(out.idempotency_key)
        view.children = [self.call(child, depth + 1) for child in node.children]
        return view


def session_view(
    events: Sequence[Event],
    heads: dict[str, str],
    checkpoints: dict[str, str],
    session_id: str,
    store: AdminStore | None = None,
) -> SessionView:
    """The model of one session from its rows (in `seq` order). ``store``, when given,
    is asked for the origins of cached answers recorded in other sessions."""
    if not events:
        raise DarError(f"no events with correlation id {session_id!r}")
    report = verify(events, heads, checkpoints, only=session_id)
    builder = _Builder(events, _badges(events, report.broken), store)
    calls = [builder.call(node, 0) for node in call_tree(events)]
    first, last = events[0].created_at, max(ev.created_at for ev in events)
    ends = [c.offset_ms + (c.duration_ms or 0.0) for call in calls for c in call.walk()] or [0.0]
    span = max((last - first) / dt.timedelta(milliseconds=1), max(ends))
    return SessionView(
        session_id,
        len(events),
        first.isoformat(),
        last.isoformat(),
        span,
        report.ok,
        report.broken,
        calls,
    )


def load_session(store: AdminStore, session_id: str) -> SessionView:
    """Read one session from the store and build its model."""
    events = store.events(LogFilter(correlation_id=session_id))
    heads = store.chain_heads(session_id)
    return session_view(events, heads, store.checkpoints(), session_id, store)


# --- diff -------------------------------------------------------------------------------------

SAME, INPUT, STATUS, ONLY_A, ONLY_B = (
    "same",
    "different input",
    "different status",
    "only in A",
    "only in B",
)


@dataclass
class DiffPair:
    """Two aligned top-level calls (one side empty when a call is in one session only)."""

    kind: str
    a: CallView | None
    b: CallView | None

    def as_dict(self) -> dict[str, Any]:
        def side(call: CallView | None) -> dict[str, Any] | None:
            if call is None:
                return None
            return {
                "call_id": call.call_id,
                "tool": call.tool,
                "status": call.status,
                "input": call.input,
                "input_hash": call.input_hash,
                "output": call.output,
                "reason": call.reason,
                "error": call.error,
            }

        return {"kind": self.kind, "a": side(self.a), "b": side(self.b)}


def _input_key(call: CallView) -> tuple[str, str]:
    """Calls match when the tool and the canonical input match (a saga row has no
    input hash of its own: its input is hashed here)."""
    digest = call.input_hash or sha256_hex_of(canonical_json(as_json_value(call.input)))
    return call.tool, digest


def _pair_block(a: list[CallView], b: list[CallView]) -> Iterator[DiffPair]:
    """A replaced block: calls of the same tool in the same position differ by input;
    the rest are on one side only."""
    for i in range(max(len(a), len(b))):
        left = a[i] if i < len(a) else None
        right = b[i] if i < len(b) else None
        if left is not None and right is not None and left.tool == right.tool:
            yield DiffPair(INPUT, left, right)
            continue
        if left is not None:
            yield DiffPair(ONLY_A, left, None)
        if right is not None:
            yield DiffPair(ONLY_B, None, right)


def diff(a: SessionView, b: SessionView) -> list[DiffPair]:
    """Align two sessions' top-level calls by order, tool and input hash."""
    keys_a, keys_b = [_input_key(c) for c in a.calls], [_input_key(c) for c in b.calls]
    matcher = difflib.SequenceMatcher(None, keys_a, keys_b, autojunk=False)
    pairs: list[DiffPair] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        left, right = a.calls[i1:i2], b.calls[j1:j2]
        if op == "equal":
            pairs += [
                DiffPair(SAME if x.status == y.status else STATUS, x, y)
                for x, y in zip(left, right, strict=True)
            ]
        else:
            pairs += _pair_block(left, right)
    return pairs


def diff_counts(pairs: list[DiffPair]) -> dict[str, int]:
    found = {kind: 0 for kind in (SAME, INPUT, STATUS, ONLY_A, ONLY_B)}
    for pair in pairs:
        found[pair.kind] += 1
    return found
