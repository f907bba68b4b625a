"""Durable runs: the decisions that start a run, journal its steps, suspend it on a person's
decision, end it, and let another worker take it over.

A run is an agent's whole loop under one session id. Every non-deterministic step inside
it (a model call, a tool call, a value `dar.step` journals) is numbered in order and written
to the event log as a ``run_step`` row: its request's canonical hash and its response. A
re-run walks the same numbers: a step whose request matches its record answers from the
record without running; the first unrecorded step and everything after it run live; a step
recorded with another request stops the run with `ReplayDivergence`. One worker drives a
run at a time: the run's row moves by compare-and-set, and a worker that loses it stops.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from dar._core import canonical_json
from dar.core.ids import derived_id, new_id
from dar.core.ops import (
    Append,
    GetApproval,
    GetRun,
    ListRuns,
    LogFilter,
    Ops,
    ReadLog,
    RedactionSalt,
    SaveRun,
)
from dar.core.rows import when
from dar.core.states import EventKind
from dar.errors import CanonicalizationError, ConfigurationError, ReplayDivergence
from dar.records import Approval, NewEvent, RunRecord, RunResult

RUNNING, SUSPENDED, FINISHED, FAILED = "running", "suspended", "finished", "failed"
STATES = (RUNNING, SUSPENDED, FINISHED, FAILED)

#: Seconds a worker holds a run between two steps before another may take it over.
LEASE = 60.0


class RunSuspended(BaseException):
    """A call inside a run waits for a person: the run stops here and resumes once they
    decide. A BaseException, so the SDKs' tool loops (which catch Exception from a tool)
    let it through to the run."""

    def __init__(self, approval_id: str | None) -> None:
        super().__init__(f"the run waits for approval {approval_id}")
        self.approval_id = approval_id


class RunLost(BaseException):
    """Another worker took the run over (this one outlived its lease): stop at once."""


@dataclass(frozen=True, slots=True)
class Step:
    """One journaled step as recorded."""

    index: int
    kind: str  # model | tool | step
    name: str
    request_hash: str
    request: str  # the request's canonical JSON, to say what was recorded
    response: Any  # the response's JSON value
    tokens: int


class Journal:
    """A run's recorded steps and how far the re-run has walked them. No I/O."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self.cursor = 0
        self.tokens_saved = 0

    @contextmanager
    def giving_back(self, index: int) -> Iterator[None]:
        """Step ``index`` runs live: when it raises (a timeout, a cancellation, an error the
        SDK retries), nothing is recorded and its number is given back, so the retry takes
        the same number and the journal keeps no gap."""
        try:
            yield
        except BaseException:
            if self.cursor == index + 1:
                self.cursor = index
            raise

    def next(
        self, kind: str, name: str, request: Any, shown: Any = None
    ) -> tuple[int, str, str, Step | None]:
        """Number the next step: ``(index, request JSON, its hash, the record or None)``.
        A recorded step asked with another request raises `ReplayDivergence`. ``shown`` is
        the request as the log may keep it (a tool's personal fields as salted hashes):
        the JSON returned and quoted is that one, the hash compared covers ``request``."""
        full = canonical_json(request)
        digest = hashlib.sha256(full).hexdigest()
        text = (full if shown is None else canonical_json(shown)).decode("utf-8")
        index = self.cursor
        self.cursor += 1
        if index >= len(self.steps):
            return index, text, digest, None
        recorded = self.steps[index]
        if (recorded.kind, recorded.name, recorded.request_hash) != (kind, name, digest):
            raise ReplayDivergence.of_step(
                index,
                f"{recorded.kind} {recorded.name} {recorded.request}",
                f"{kind} {name} {text}",
            )
        self.tokens_saved += recorded.tokens
        return index, text, digest, recorded


def salt() -> Ops[str]:
    """The database's salt for redacted values (a tool call's request, as journaled)."""
    found: str = yield RedactionSalt()
    return found


def run_call_id(session_id: str) -> str:
    """The call id every row of a run's own is written under: the run is one group."""
    return derived_id("durable run", session_id)


def _row(
    record: RunRecord, kind: EventKind, now: float, *, said: str | None = None, **fields: Any
) -> NewEvent:
    return NewEvent(
        event_id=new_id(),
        call_id=run_call_id(record.session_id),
        tool_name=fields.pop("tool_name", record.agent),
        effect=fields.pop("effect", "run"),
        status=kind.value,
        created_at=when(now),
        correlation_id=record.session_id,
        rejection_reason=said,
        **fields,
    )


def start(
    session_id: str, agent: str, arguments: str, owner: str, now: float, lease: float
) -> Ops[tuple[RunRecord, bool]]:
    """Open the run, or find it: ``(record, whether this worker drives it now)``. A run
    that ended, that another worker holds, or that waits for a person who has not decided
    yet is not driven again; one whose worker died, or whose call was decided, is taken
    over. The same session with another agent or other arguments is refused."""
    if not lease > 0:
        raise ConfigurationError("lease must be positive seconds")
    fresh = RunRecord(
        session_id, agent, RUNNING, arguments=arguments, owner=owner,
        lease_until=now + lease, version=1, created_at=now, updated_at=now,
    )  # fmt: skip
    if (yield SaveRun(fresh, None)):
        yield Append(_row(fresh, EventKind.RUN_STARTED, now, said=f"started by {owner}"))
        return fresh, True
    found: RunRecord | None = yield GetRun(session_id)
    if found is None:  # removed between the two statements: open it after all
        return (yield from start(session_id, agent, arguments, owner, now, lease))
    if found.agent != agent:
        raise ConfigurationError(
            f"session {session_id!r} is a run of {found.agent}, not of {agent}"
        )
    if found.arguments != arguments:  # the run is its arguments: another is another run
        raise ConfigurationError(
            f"session {session_id!r} is a run of {agent} with {found.arguments[:200]}, "
            f"not {arguments[:200]}"
        )
    if found.state in (FINISHED, FAILED) or (
        found.state == RUNNING and (found.lease_until or 0) > now
    ):
        return found, False
    if found.state == SUSPENDED and found.approval_id is not None:
        decided: Approval | None = yield GetApproval(found.approval_id)
        if decided is not None and decided.state(now) == "pending":
            return found, False  # as `due` says: nothing to do until a person decides
    taken = yield from take_over(found, owner, now, lease)
    return (found, False) if taken is None else (taken, True)


def take_over(record: RunRecord, owner: str, now: float, lease: float) -> Ops[RunRecord | None]:
    """Hold ``record`` for ``owner`` (its last worker is gone, or it was suspended); None
    when another worker was quicker."""
    taken = replace(
        record, state=RUNNING, owner=owner, lease_until=now + lease, approval_id=None,
        version=record.version + 1, updated_at=now,
    )  # fmt: skip
    if not (yield SaveRun(taken, record.version)):
        return None
    yield Append(_row(taken, EventKind.RUN_STARTED, now, said=f"resumed by {owner}"))
    return taken


def journal(session_id: str) -> Ops[Journal]:
    """The run's recorded steps, in order.

    A step recorded twice is the newest worker's record (the one that took the run last):
    the steps after it were built on that one. That happens when a worker outlived its
    lease and wrote a row late, and when a journal has a gap: steps that run together (a
    turn's tool calls) record as they end, so a crash can leave a later one recorded and an
    earlier one not. The journal ends at the first gap; the re-run asks again from there.
    """
    rows = yield ReadLog(LogFilter(correlation_id=session_id, status=EventKind.RUN_STEP.value))
    steps: dict[int, tuple[int, Step]] = {}
    for row in rows:
        index = row.attempt if row.attempt is not None else -1
        if index < 0:
            continue
        response, tokens, taken = _read_response(row.output)
        known = steps.get(index)
        if known is not None and known[0] >= taken:  # among equals, the first record wins
            continue
        request = row.input if isinstance(row.input, str) else canonical_json(row.input).decode()
        steps[index] = (
            taken,
            Step(index, row.effect, row.tool_name, row.input_hash or "", request, response, tokens),
        )
    ordered: list[Step] = []
    while len(ordered) in steps:
        ordered.append(steps[len(ordered)][1])
    return Journal(ordered)


def _read_response(value: Any) -> tuple[Any, int, int]:
    """A step row's output, as the log reads it back (JSON text or its value):
    ``(response, tokens, the run's version when its worker took it)``."""
    if isinstance(value, (str, bytes)):
        value = json.loads(value)
    if not isinstance(value, dict):
        return None, 0, 0
    return value.get("response"), int(value.get("tokens") or 0), int(value.get("taken") or 0)


def record_step(
    record: RunRecord,
    step: tuple[int, str, str, str, str],
    response: Any,
    tokens: int,
    now: float,
    lease: float,
    duration_ms: float | None = None,
    taken: int = 0,
) -> Ops[RunRecord]:
    """Write one live step: the run's lease moves on first (a worker that lost the run
    writes nothing), then the step's row. ``step`` is ``(index, kind, name, request JSON,
    request hash)``; ``taken`` is the run's version when this worker took it (`journal`
    prefers the newest worker's record of a step). Returns the run as now held."""
    index, kind, name, text, digest = step
    moved = replace(
        record, steps=max(record.steps, index + 1), tokens=record.tokens + tokens,
        lease_until=now + lease, version=record.version + 1, updated_at=now,
    )  # fmt: skip
    if not (yield SaveRun(moved, record.version)):
        raise RunLost(f"run {record.session_id} was taken over by another worker")
    body = canonical_json({"response": response, "tokens": tokens, "taken": taken}).decode()
    yield Append(
        _row(
            record,
            EventKind.RUN_STEP,
            now,
            tool_name=name,
            effect=kind,
            attempt=index,
            input=text,
            input_hash=digest,
            output=body,
            duration_ms=duration_ms,
        )
    )
    return moved


def suspend(record: RunRecord, approval_id: str | None, saved: int, now: float) -> Ops[RunRecord]:
    """The run waits for a person's decision on ``approval_id``; nothing after runs."""
    return (
        yield from _end(
            record,
            SUSPENDED,
            EventKind.RUN_SUSPENDED,
            f"waits for approval {approval_id}",
            saved,
            now,
            approval_id=approval_id,
        )
    )


def end(record: RunRecord, result: RunResult, saved: int, now: float) -> Ops[RunRecord]:
    """End this stretch of the run as ``result`` says: suspended, failed or finished."""
    if result.status == SUSPENDED:
        return (yield from suspend(record, result.approval_id, saved, now))
    if result.status == FAILED:
        return (yield from fail(record, result.error or "", saved, now))
    return (yield from finish(record, result.output, saved, now))


def output_text(output: Any) -> str:
    """What the agent returned, as its run records it. A value with no JSON form is a
    `TypeError`, raised before anything is written: the run fails with it."""
    try:
        return canonical_json(output).decode("utf-8")
    except CanonicalizationError as exc:
        raise TypeError(f"the agent returned a value with no JSON form: {exc}") from exc


def finish(record: RunRecord, output: Any, saved: int, now: float) -> Ops[RunRecord]:
    """The agent returned ``output`` (recorded as JSON: see `output_text`)."""
    text = output_text(output)
    return (
        yield from _end(record, FINISHED, EventKind.RUN_ENDED, "finished", saved, now, output=text)
    )


def fail(record: RunRecord, error: str, saved: int, now: float) -> Ops[RunRecord]:
    """The agent raised: the run is failed with the error (a retry starts a new run)."""
    return (
        yield from _end(
            record, FAILED, EventKind.RUN_ENDED, f"failed: {error}", saved, now, error=error
        )
    )


def _end(
    record: RunRecord, state: str, kind: EventKind, said: str, saved: int, now: float, **fields: Any
) -> Ops[RunRecord]:
    ended = replace(
        record, state=state, owner=None, lease_until=None, version=record.version + 1,
        updated_at=now, tokens_saved=record.tokens_saved + saved, **fields,
    )  # fmt: skip
    if not (yield SaveRun(ended, record.version)):
        raise RunLost(f"run {record.session_id} was taken over by another worker")
    yield Append(_row(record, kind, now, said=said))
    return ended


def due(now: float) -> Ops[list[RunRecord]]:
    """Runs to resume: those whose worker's lease ran out, and those suspended on an
    approval a person has now decided (or that expired)."""
    found: list[RunRecord] = yield ListRuns((RUNNING, SUSPENDED))
    ready = []
    for record in found:
        if record.state == RUNNING:
            if (record.lease_until or 0) <= now:
                ready.append(record)
            continue
        decided: Approval | None = (
            None if record.approval_id is None else (yield GetApproval(record.approval_id))
        )
        if decided is None or decided.state(now) != "pending":
            ready.append(record)
    return ready


def listing(state: str | None) -> Ops[list[RunRecord]]:
    if state is not None and state not in STATES:
        raise ConfigurationError(f"state must be one of {', '.join(STATES)}, not {state!r}")
    found: list[RunRecord] = yield ListRuns(() if state is None else (state,))
    return found


def result_of(record: RunRecord) -> RunResult:
    """What `start` answers for a run it does not drive: how it stands."""
    output = None if record.output is None else json.loads(record.output)
    return RunResult(record.session_id, record.state, output, record.error, record.approval_id)
