"""Replay a recorded session: serve each tool call from the log, in order, running nothing.

An agent change can then be tested against yesterday's real conversations with no side
effects. The first call that differs from the record (another tool, or another input hash)
stops the replay with `ReplayDivergence`, which says where and how. Plans are served as
the plans that were made, and a saga as a group: its steps from its recorded calls.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from dar._core import canonical_json
from dar.audit.postmortem import CallNode, call_tree
from dar.core.decide import canonical_input, input_digest
from dar.core.dryrun import Plan
from dar.core.ops import GetSaga, LogFilter, Ops, ReadLog
from dar.core.states import EventKind, event_kind
from dar.effects import Status
from dar.errors import DarError, ReplayDivergence
from dar.records import Event, Result, SagaRecord
from dar.tools import Tool


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """A top-level call of the recorded session and what it returned: a call, a plan
    (``kind="plan"``, its row's id and preview) or a saga (its steps, and its state)."""

    tool: str
    input_hash: str | None
    status: Status
    output: Any
    reason: str | None
    rule: str | None
    error: str | None
    key: str | None
    kind: str = "call"
    call_id: str = ""
    steps: tuple[RecordedCall, ...] = ()
    saga_state: str | None = None


def recorded_calls(events: Sequence[Event], outputs: dict[str, Any]) -> list[RecordedCall]:
    """The session's top-level calls (nested calls ran inside handlers, which a replay does
    not run), a search's commits after it. ``outputs``: recorded outputs by key, for calls
    answered from the record."""
    calls = []
    for node in call_tree(events):
        calls.append(_recorded(node, outputs))
        if node.outcome.status == EventKind.SPECULATED.value:
            calls.extend(_recorded(c, outputs) for c in _commits(node))
    return calls


def _commits(search: CallNode) -> list[CallNode]:
    """The commits of a search's plans, nested in its group: the calls after its last row
    that are not reads (a commit reads again what its plan was made on)."""
    ended = search.outcome.seq
    return [c for c in search.children if c.first.seq > ended and c.first.effect != "read"]


def _recorded(node: CallNode, outputs: dict[str, Any]) -> RecordedCall:
    out = node.outcome
    if out.status == EventKind.SPECULATED.value:  # the search as recorded, to answer with
        return RecordedCall(
            "speculate", None, Status.PLANNED, out.output, out.rejection_reason, None, None,
            None, kind="search", call_id=node.call_id,
        )  # fmt: skip
    if out.effect == "saga":
        steps = tuple(_recorded(child, outputs) for child in node.children)
        key = out.idempotency_key or ""
        return RecordedCall(
            "saga", None, Status.EXECUTED, None, out.rejection_reason, None, None, key,
            kind="saga", call_id=node.call_id, steps=steps,
        )  # fmt: skip
    planned = next((r for r in node.rows if r.status == Status.PLANNED.value), None)
    if planned is not None:
        return RecordedCall(
            planned.tool_name, planned.input_hash, Status.PLANNED, planned.output,
            planned.rejection_reason, planned.rule_name, None, planned.idempotency_key,
            kind="plan", call_id=planned.event_id,
        )  # fmt: skip
    output = out.output
    if out.status == "cached" and out.idempotency_key in outputs:
        output = outputs[out.idempotency_key]
    return RecordedCall(
        tool=out.tool_name,
        input_hash=_first_hash(node),
        status=replayed_status(out.status),
        output=output,
        reason=out.rejection_reason,
        rule=out.rule_name,
        error=out.error,
        key=out.idempotency_key,
        call_id=node.call_id,
    )


def replayed_status(status: str) -> Status:
    """How a call whose last row has this status is answered in a replay: as it was
    answered live (a call whose worker died has only its `started` row, and replays as
    indeterminate, as it would be answered now)."""
    kind = event_kind(status)
    outcome = None if kind is None else kind.outcome
    if outcome is None:
        raise DarError(f"cannot replay a call that ended with a {status!r} row")
    return outcome


def load_replay(correlation_id: str) -> Ops[Replayer]:
    """Read a session (and the outputs its cached calls answered with) from the store."""
    events = yield ReadLog(LogFilter(correlation_id=correlation_id))
    if not events:
        raise DarError(f"nothing to replay: no events with correlation id {correlation_id!r}")
    outputs: dict[str, Any] = {}
    for node in _all(call_tree(events)):
        key = node.outcome.idempotency_key
        if node.status == "cached" and key and key not in outputs:
            executed = yield ReadLog(LogFilter(key=key, status="executed"))
            if executed:
                outputs[key] = executed[-1].output
    calls = recorded_calls(events, outputs)
    for i, call in enumerate(calls):
        if call.kind == "saga":  # how it ended lives in the saga's record
            record: SagaRecord | None = yield GetSaga((call.key or "").removeprefix("saga:"))
            calls[i] = replace(call, saga_state=None if record is None else record.state)
    return Replayer(calls)


def _all(nodes: list[CallNode]) -> list[CallNode]:
    """The calls and the calls nested in them (a saga's steps), depth first."""
    return [n for node in nodes for n in (node, *_all(node.children))]


def _first_hash(node: CallNode) -> str | None:
    return next((r.input_hash for r in node.rows if r.input_hash is not None), None)


class Replayer:
    """Serves recorded calls in order; I/O-free, shared by both runtimes."""

    def __init__(self, calls: list[RecordedCall]) -> None:
        self.calls = calls
        self.position = 0
        self.divergence: ReplayDivergence | None = None

    def _take(self, kind: str, tool: str, digest: str | None) -> RecordedCall:
        """The next recorded call, when it is this kind of call of this tool and input."""
        index = self.position
        expected = self.calls[index] if index < len(self.calls) else None
        if (
            expected is None
            or expected.kind != kind
            or expected.tool != tool
            or expected.input_hash != digest
        ):
            self.divergence = ReplayDivergence(index, expected, tool, digest)
            raise self.divergence
        self.position += 1
        return expected

    def next_saga(self, saga_id: str) -> tuple[Replayer, str | None]:
        """The recorded saga with this id: a replayer of its steps, and how it ended."""
        expected = self._take("saga", "saga", None)
        if expected.key != f"saga:{saga_id}":
            self.position -= 1
            self.divergence = ReplayDivergence(self.position, expected, f"saga {saga_id}", None)
            raise self.divergence
        return Replayer(list(expected.steps)), expected.saga_state

    def next_search(self) -> dict[str, Any]:
        """The recorded search (as its last row holds it): its tree, its plans and why."""
        expected = self._take("search", "speculate", None)
        if not isinstance(expected.output, dict) or "tree" not in expected.output:
            raise DarError(f"the recorded search {expected.call_id} never ended: {expected.reason}")
        return expected.output

    def next_plan(self, tool: Tool[Any], value: Any, correlation_id: str | None) -> Plan:
        """The plan recorded for this call, as it was made (its preview, its verdict)."""
        digest = input_digest(tool, value)
        expected = self._take("plan", tool.name, digest)
        said = (expected.reason or "").removeprefix("would ").split("; ")
        preview = None if expected.output is None else json.loads(expected.output)
        return Plan(
            plan_id=expected.call_id,
            tool=tool.name,
            arguments=canonical_input(value).decode("utf-8"),
            given_key=None,
            input_hash=digest or "",
            key=expected.key,
            verdict=said[0],
            reasons=tuple(said[1:]),
            preview=preview,
            rules_fingerprint="",
            key_state="",
            correlation_id=correlation_id,
            created_at=0.0,
            expires_at=math.inf,
        )

    def next(self, tool: Tool[Any], value: Any) -> Result:
        """The recorded answer to this call: JSON text or a dict, hashed as a live call."""
        digest = input_digest(tool, value)
        index = self.position
        expected = self._take("call", tool.name, digest)
        output = expected.output
        answered = expected.status in (Status.EXECUTED, Status.CACHED)
        return Result(
            expected.status,
            output=None if output is None else tool.signature.load_output(output),
            output_json=canonical_json(output).decode("utf-8") if answered else None,
            reason=expected.reason,
            rule=expected.rule,
            error=expected.error,
            key=expected.key,
            input_hash=digest,
            extra={"replayed": True, "index": index},
        )

    @property
    def finished(self) -> bool:
        """Whether every recorded call has been served."""
        return self.position == len(self.calls)
