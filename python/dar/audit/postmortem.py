"""Postmortem views of the event log: a session as a tree of calls, counts, chain checks.

Plain functions over `Event` records (and the chain heads), so the CLI, tests and any
notebook share them; `dar.cli.main` only renders.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dar._core import canonical_json, sha256_hex_of
from dar.audit.chain import Broken, as_json_value, chain_key, verify_chain
from dar.records import Claim, Event


@dataclass
class CallNode:
    """One `execute()` call: its rows, and the calls its handler made."""

    call_id: str
    rows: list[Event]
    children: list[CallNode] = field(default_factory=list)

    @property
    def first(self) -> Event:
        return self.rows[0]

    @property
    def outcome(self) -> Event:
        """The row that says how the call ended (the last one written)."""
        return self.rows[-1]

    @property
    def status(self) -> str:
        return self.outcome.status

    @property
    def duration_ms(self) -> float | None:
        return next((r.duration_ms for r in reversed(self.rows) if r.duration_ms is not None), None)

    def as_dict(self) -> dict[str, Any]:
        out = self.outcome
        return {
            "call_id": self.call_id,
            "tool": out.tool_name,
            "effect": out.effect,
            "status": out.status,
            "started_at": self.first.created_at.isoformat(),
            "duration_ms": self.duration_ms,
            "key": out.idempotency_key,
            "rule": out.rule_name,
            "reason": out.rejection_reason,
            "error": out.error,
            "input": self.first.input,
            "output": out.output,
            "rows": [r.seq for r in self.rows],
            "children": [c.as_dict() for c in self.children],
        }


def call_tree(events: Sequence[Event]) -> list[CallNode]:
    """Group a session's rows into calls and nest them by parent link, in the order the
    calls happened."""
    calls: dict[str, CallNode] = {}
    for ev in events:
        cid = ev.call_id or ev.event_id  # rows written before call ids existed stand alone
        node = calls.get(cid)
        if node is None:
            node = calls[cid] = CallNode(cid, [])
        node.rows.append(ev)
    roots: list[CallNode] = []
    # In the order the calls happened. `seq` is the order rows were written, and a
    # buffered `cached` row is written after the calls that followed it.
    for node in sorted(calls.values(), key=lambda n: (n.first.created_at, n.first.seq)):
        parent = node.first.parent_event_id
        if parent is not None and parent in calls:
            calls[parent].children.append(node)
        else:
            roots.append(node)
    return roots


@dataclass
class ToolStats:
    tool: str
    statuses: Counter[str]
    p50_ms: float | None
    p99_ms: float | None

    @property
    def duplicates_absorbed(self) -> int:
        return self.statuses.get("cached", 0)


@dataclass
class Stats:
    tools: list[ToolStats]
    refusals: dict[str, Counter[str]]  # rule (or "(input)") -> reason -> count
    failures: Counter[str]  # error -> count
    indeterminate_keys: list[str]
    refusal_sessions: dict[str, list[str]] = field(default_factory=dict)  # rule -> sessions

    def as_dict(self) -> dict[str, Any]:
        return {
            "tools": [
                {
                    "tool": t.tool,
                    "statuses": dict(t.statuses),
                    "p50_ms": t.p50_ms,
                    "p99_ms": t.p99_ms,
                    "duplicates_absorbed": t.duplicates_absorbed,
                }
                for t in self.tools
            ],
            "refusals": {rule: dict(reasons) for rule, reasons in self.refusals.items()},
            "refusal_sessions": self.refusal_sessions,
            "failures": dict(self.failures),
            "indeterminate_waiting": self.indeterminate_keys,
        }


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def stats(events: Iterable[Event]) -> Stats:
    """Counts per tool and status, refusals by rule with their reasons, failures, the keys
    still waiting for an operator, and p50/p99 handler durations."""
    per_tool: dict[str, Counter[str]] = defaultdict(Counter)
    durations: dict[str, list[float]] = defaultdict(list)
    refusals: dict[str, Counter[str]] = defaultdict(Counter)
    failures: Counter[str] = Counter()
    state: dict[str, str] = {}
    sessions: dict[str, dict[str, None]] = defaultdict(dict)  # ordered sets
    for ev in events:
        if ev.status == "started":
            state[ev.idempotency_key or ""] = "running"
            continue
        per_tool[ev.tool_name][ev.status] += 1
        if ev.duration_ms is not None and ev.status in ("executed", "failed"):
            durations[ev.tool_name].append(ev.duration_ms)
        if ev.status == "rejected":
            refusals[ev.rule_name or "(input)"][ev.rejection_reason or ""] += 1
            if ev.correlation_id:
                sessions[ev.rule_name or "(input)"].setdefault(ev.correlation_id, None)
        elif ev.status == "failed" and ev.error:
            failures[ev.error] += 1
        if ev.idempotency_key:
            state[ev.idempotency_key] = ev.status
    tools = [
        ToolStats(name, counts, percentile(durations[name], 50), percentile(durations[name], 99))
        for name, counts in sorted(per_tool.items())
    ]
    waiting = sorted(k for k, s in state.items() if s == "indeterminate")
    return Stats(
        tools,
        dict(refusals),
        failures,
        waiting,
        {rule: list(found)[-5:] for rule, found in sessions.items()},
    )


@dataclass
class VerifyReport:
    chains: int
    rows: int
    broken: list[Broken]

    @property
    def ok(self) -> bool:
        return not self.broken

    def as_dict(self) -> dict[str, Any]:
        return {
            "chains": self.chains,
            "rows": self.rows,
            "ok": self.ok,
            "broken": [asdict(b) for b in self.broken],
        }


def verify(
    events: Iterable[Event],
    heads: dict[str, str],
    checkpoints: dict[str, str],
    only: str | None = None,
    *,
    claims: Iterable[Claim] = (),
    purges: Iterable[dict[str, Any]] = (),
) -> VerifyReport:
    """Check every chain (or the one of ``only``): each row's hash must follow from the
    rows before it, starting at the last purge checkpoint and ending at the recorded head;
    every head must have its rows and every chain its head. Over the whole log, also: each
    purge record is named by a `purged` row, and each claim — what a cache hit answers —
    agrees with the row that recorded it."""
    chains: dict[str, list[dict[str, Any]]] = defaultdict(list)
    all_events = list(events)
    for ev in all_events:
        chains[chain_key(ev.correlation_id, ev.call_id or ev.event_id)].append(asdict(ev))
    names = [only] if only is not None else sorted(set(chains) | set(heads))
    total = 0
    broken = []
    for name in names:
        rows = chains.get(name, [])
        n, bad = verify_chain(name, rows, checkpoints.get(name), heads.get(name))
        total += n
        if bad is None and rows and name not in heads:
            last = rows[-1]
            bad = Broken(name, int(last["seq"]), str(last["event_id"]), "its chain head is gone")
        if bad is None and not rows and name in heads and name not in checkpoints:
            bad = Broken(name, 0, "", "the chain head names rows that are gone")
        if bad is not None:
            broken.append(bad)
    if only is None:
        purge_list = list(purges)
        broken += _unnamed_purges(all_events, purge_list)
        broken += _claims_off_the_record(all_events, list(claims), purged=bool(purge_list))
    return VerifyReport(len(names), total, broken)


def _canonical(value: Any) -> bytes:
    return canonical_json(as_json_value(value))


def _unnamed_purges(events: list[Event], purges: list[dict[str, Any]]) -> list[Broken]:
    """A purge record (where verify resumes a chain) must be named by a `purged` row."""
    named = {_canonical(ev.output) for ev in events if ev.status == "purged" and ev.output}
    return [
        Broken("(purges)", 0, "", f"purge record #{i + 1} is named by no `purged` row")
        for i, points in enumerate(purges)
        if _canonical(points) not in named
    ]


def _claims_off_the_record(
    events: list[Event], claims: list[Claim], *, purged: bool
) -> list[Broken]:
    """What a duplicate is answered with (the claim's output) must be what the log recorded,
    and a claim's call must be in the log (unless a purge may have removed it)."""
    recorded: dict[str, Event] = {}
    ids: set[str] = set()
    for ev in events:
        ids.add(ev.event_id)
        if ev.idempotency_key and ev.status in ("executed", "resolved"):
            recorded[ev.idempotency_key] = ev
    broken = []
    for claim in claims:
        where = f"claim:{claim.key}"
        row = recorded.get(claim.key)
        if claim.state == "done":
            if row is None:
                if not purged:
                    broken.append(Broken(where, 0, "", "a done claim with no recorded outcome"))
                continue
            stored = None if claim.output is None else json.loads(claim.output)
            if _canonical(stored) != _canonical(row.output):
                why = "the claim's output (what duplicates get) differs from the log's"
                broken.append(Broken(where, row.seq, row.event_id, why))
        elif claim.call_event_id and claim.call_event_id not in ids and not purged:
            broken.append(Broken(where, 0, claim.call_event_id, "the claim's call is gone"))
    return broken


def anchor(heads: dict[str, str]) -> dict[str, Any]:
    """What to keep outside the database: every chain's head now, and one digest of all."""
    return {"heads": heads, "digest": sha256_hex_of(canonical_json(heads))}


def check_anchor(
    anchored: dict[str, Any], events: Iterable[Event], checkpoints: dict[str, str]
) -> list[Broken]:
    """Each anchored head must still be in its chain (the chain may only have grown from
    it, or been purged up to it): a chain rewritten consistently, every hash recomputed,
    loses the head that was kept outside."""
    seen: dict[str, set[str]] = defaultdict(set)
    for ev in events:
        if ev.row_hash:
            seen[chain_key(ev.correlation_id, ev.call_id or ev.event_id)].add(ev.row_hash)
    broken = []
    for name, head in dict(anchored.get("heads", {})).items():
        if head not in seen.get(name, set()) and checkpoints.get(name) != head:
            broken.append(Broken(name, 0, "", "rewritten or removed since it was anchored"))
    return broken
