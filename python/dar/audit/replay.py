"""Replay a recorded session: serve each tool call from the log, in order, running nothing.

An agent change can then be tested against yesterday's real conversations with no side
effects. The first call that differs from the record (another tool, or another input hash)
stops the replay with `ReplayDivergence`, which says where and how.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dar._core import canonical_json
from dar.audit.postmortem import CallNode, call_tree
from dar.core.decide import input_digest
from dar.core.ops import LogFilter, Ops, ReadLog
from dar.core.states import event_kind
from dar.effects import Status
from dar.errors import DarError, ReplayDivergence
from dar.records import Event, Result
from dar.tools import Tool


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """A top-level call of the recorded session and what it returned."""

    tool: str
    input_hash: str | None
    status: Status
    output: Any
    reason: str | None
    rule: str | None
    error: str | None
    key: str | None


def recorded_calls(events: Sequence[Event], outputs: dict[str, Any]) -> list[RecordedCall]:
    """The session's top-level calls (nested calls ran inside handlers, which a replay does
    not run). ``outputs``: recorded outputs by key, for calls answered from the record."""
    calls = []
    for node in call_tree(events):
        out = node.outcome
        output = out.output
        if out.status == "cached" and out.idempotency_key in outputs:
            output = outputs[out.idempotency_key]
        calls.append(
            RecordedCall(
                tool=out.tool_name,
                input_hash=_first_hash(node),
                status=replayed_status(out.status),
                output=output,
                reason=out.rejection_reason,
                rule=out.rule_name,
                error=out.error,
                key=out.idempotency_key,
            )
        )
    return calls


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
    for node in call_tree(events):
        key = node.outcome.idempotency_key
        if node.status == "cached" and key and key not in outputs:
            executed = yield ReadLog(LogFilter(key=key, status="executed"))
            if executed:
                outputs[key] = executed[-1].output
    return Replayer(recorded_calls(events, outputs))


def _first_hash(node: CallNode) -> str | None:
    return next((r.input_hash for r in node.rows if r.input_hash is not None), None)


class Replayer:
    """Serves recorded calls in order; I/O-free, shared by both runtimes."""

    def __init__(self, calls: list[RecordedCall]) -> None:
        self.calls = calls
        self.position = 0
        self.divergence: ReplayDivergence | None = None

    def next(self, tool: Tool[Any], value: Any) -> Result:
        """The recorded answer to this call: JSON text or a dict, hashed as a live call."""
        digest = input_digest(tool, value)
        index = self.position
        expected = self.calls[index] if index < len(self.calls) else None
        if expected is None or expected.tool != tool.name or expected.input_hash != digest:
            self.divergence = ReplayDivergence(index, expected, tool.name, digest)
            raise self.divergence
        self.position += 1
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
