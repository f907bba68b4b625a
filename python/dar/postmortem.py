"""Postmortem views of the event log: a session as a tree of calls, counts, chain checks.

Plain functions over `Event` records (and the chain heads), so the CLI, tests and any
notebook share them; `dar.cli` only renders.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dar.chain import Broken, chain_key, verify_chain
from dar.records import Event

TERMINAL = (
    "executed",
    "cached",
    "rejected",
    "failed",
    "in_progress",
    "conflict",
    "indeterminate",
    "resolved",
)


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
) -> VerifyReport:
    """Check every chain (or the one of ``only``): each row's hash must follow from the
    rows before it, starting at the last purge checkpoint and ending at the recorded head."""
    chains: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ev in events:
        chains[chain_key(ev.correlation_id, ev.call_id or ev.event_id)].append(asdict(ev))
    names = [only] if only is not None else sorted(set(chains) | set(heads))
    total = 0
    broken = []
    for name in names:
        n, bad = verify_chain(name, chains.get(name, []), checkpoints.get(name), heads.get(name))
        total += n
        if bad is not None:
            broken.append(bad)
    return VerifyReport(len(names), total, broken)
