"""Durable sagas: a sequence of tool calls whose completed steps are undone, once each and
in reverse order, when a later step does not complete, even across crashes.

Everything here is the decision core's: small generators that yield operations (`dar.core.ops`,
plus `CallTool` for one ordinary `dar` call) and never touch a database themselves, so the
sync and async runtimes drive the same logic. The saga's state lives in the store and moves
by compare-and-set on its version: whoever holds the saga's lease drives it, and a worker
that lost it stops (`SagaLost`).

Each forward step is an ordinary exactly-once call keyed ``saga:{saga_id}:{index}``; its
compensation is another, keyed ``compensate:saga:{saga_id}:{index}``. So a compensation
interrupted by a crash is simply made again: it runs once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from typing import Any

from dar._core import canonical_json
from dar.context import CallInfo
from dar.core.decide import canonical_input, own_key, provider_key
from dar.core.ids import new_id
from dar.core.ops import (
    CallReconcile,
    CallTool,
    GetClaim,
    GetSaga,
    ListSagas,
    Ops,
    RedactionSalt,
    Resolve,
    SaveSaga,
    Wait,
)
from dar.core.rows import resolved_row, storable, when
from dar.core.states import ClaimState, EventKind
from dar.effects import Effect, Status
from dar.errors import CanonicalizationError, ConfigurationError, DarError
from dar.records import Claim, NewEvent, Result, SagaRecord
from dar.tools import Reconciled, Tool

OPEN = "open"
COMPENSATING = "compensating"
COMPLETED = "completed"
COMPENSATED = "compensated"
COMPENSATION_FAILED = "compensation_failed"
NEEDS_OPERATOR = "needs_operator"
STATES = (OPEN, COMPENSATING, COMPLETED, COMPENSATED, COMPENSATION_FAILED, NEEDS_OPERATOR)
UNFINISHED = (OPEN, COMPENSATING, NEEDS_OPERATOR, COMPENSATION_FAILED)

LEASE = 300.0  # seconds a worker holds a saga between two of its writes
TRIES = 3  # attempts of one compensation before the saga waits for an operator
BACKOFF = 0.05  # seconds before the second attempt; doubles after each

DONE = (Status.EXECUTED.value, Status.CACHED.value)


class SagaLost(DarError):
    """Another worker took this saga over (its lease had run out): this one must stop."""


class SagaAborted(DarError):
    """A step did not complete, so the saga stopped and compensated; the ``with`` block
    ends here (the exception is swallowed by the block). ``result`` is the step's."""

    def __init__(self, saga_id: str, result: Result, state: str) -> None:
        super().__init__(f"saga {saga_id}: step ended {result.status.value}; saga {state}")
        self.result, self.state = result, state


@dataclass
class Step:
    """One forward step and its compensation, as the saga records them."""

    index: int
    tool: str
    effect: str
    input: str  # the arguments' canonical JSON ("" when they had none: refused)
    key: str  # the key the step was called with
    status: str = "running"  # running | not_run | a call's status
    output: str | None = None  # recorded output (JSON text)
    compensation: str | None = None  # None (pending) | done | not_needed | failed
    tries: int = 0


@dataclass
class Saga:
    """The working copy of a saga: what the generators below read and move."""

    saga_id: str
    correlation_id: str | None
    call_id: str
    owner: str
    state: str = OPEN
    steps: list[Step] = field(default_factory=list)
    version: int = 0
    created_at: float = 0.0
    error: str | None = None
    lease: float = LEASE  # how long this worker may go quiet before another takes over

    def record(self, now: float) -> SagaRecord:
        return SagaRecord(
            saga_id=self.saga_id,
            correlation_id=self.correlation_id,
            call_id=self.call_id,
            state=self.state,
            owner=self.owner,
            lease_until=now + self.lease,
            steps=json.dumps([asdict(s) for s in self.steps]),
            version=self.version + 1,
            created_at=self.created_at,
            updated_at=now,
            error=self.error,
        )

    @classmethod
    def of(cls, rec: SagaRecord, owner: str) -> Saga:
        steps = [Step(**s) for s in json.loads(rec.steps)]
        return cls(
            rec.saga_id, rec.correlation_id, rec.call_id, owner, rec.state, steps,
            rec.version, rec.created_at, rec.error,
        )  # fmt: skip

    def row(self, kind: EventKind, said: str, now: float) -> NewEvent:
        """A row of the saga's own: the group its calls are nested under in `dar trace`."""
        return NewEvent(
            event_id=new_id(),
            call_id=self.call_id,
            tool_name="saga",
            effect="saga",
            status=kind.value,
            created_at=when(now),
            idempotency_key=f"saga:{self.saga_id}",
            correlation_id=self.correlation_id,
            rejection_reason=storable(said),
        )


Clock = Callable[[], float]


def save(saga: Saga, clock: Clock, said: str | None = None) -> Ops[None]:
    """Write the saga's state (renewing its lease), with a row when ``said``."""
    now = clock()
    kind = EventKind.SAGA_STARTED if saga.version == 0 else EventKind.SAGA_ENDED
    if said is not None and saga.state in (OPEN, COMPENSATING) and saga.version:
        kind = EventKind.SAGA_COMPENSATING
    event = None if said is None else saga.row(kind, said, now)
    rec = saga.record(now)
    written = yield SaveSaga(rec, None if saga.version == 0 else saga.version, event)
    if not written:
        raise SagaLost(f"saga {saga.saga_id} was taken over by another worker")
    saga.version = rec.version


def begin(
    saga_id: str, correlation_id: str | None, owner: str, clock: Clock, lease: float = LEASE
) -> Ops[Saga]:
    """Start a new saga (a saga id is used once)."""
    if not isinstance(saga_id, str) or not saga_id:
        raise ConfigurationError("a saga needs a non-empty str id, like 'checkout-ORD-1'")
    found: SagaRecord | None = yield GetSaga(saga_id)
    if found is not None:
        hint = "rt.recover_sagas() finishes an interrupted one" if found.state in UNFINISHED else ""
        raise ConfigurationError(
            f"saga {saga_id!r} exists and is {found.state}; {hint}".rstrip("; ")
        )
    saga = Saga(saga_id, correlation_id, new_id(), owner, created_at=clock(), lease=lease)
    yield from save(saga, clock, f"saga {saga_id} started")
    return saga


def refusal(saga: Saga, tool: Tool[Any]) -> str | None:
    """Why ``tool`` may not be the next step: every step but the last must be undoable."""
    pivot = next((s for s in saga.steps if s.effect == Effect.IRREVERSIBLE.value), None)
    if pivot is not None and tool.effect is not Effect.READ:
        return (
            f"step {pivot.index} ({pivot.tool}) is irreversible, so it must be the saga's "
            f"last step; {tool.name} may not follow it"
        )
    if tool.effect in (Effect.MUTATE_LOCAL, Effect.MUTATE_EXTERNAL) and tool.compensate is None:
        return f"{tool.name} has no compensate=: a saga can only undo steps that declare one"
    if tool.redact and tool.effect is not Effect.READ:
        # Undoing a step after a crash needs its arguments, which redact= keeps out of the
        # database: the saga could not keep both promises.
        return f"{tool.name} redacts its arguments, so a saga cannot keep them to undo it"
    return None


def forward(
    saga: Saga, tool: Tool[Any], arguments: Any, tools: dict[str, Tool[Any]], clock: Clock
) -> Ops[Result]:
    """One forward step. A step that does not complete compensates the saga."""
    if saga.state != OPEN:
        raise ConfigurationError(f"saga {saga.saga_id} is {saga.state}: no more steps")
    refused = refusal(saga, tool)
    text = ""  # a refused step keeps no arguments (they may be personal)
    if refused is None:
        with suppress(CanonicalizationError):  # else the call below is refused (and logged)
            text = canonical_input(arguments).decode("utf-8")
    index = len(saga.steps)
    step = Step(index, tool.name, tool.effect.value, text, f"saga:{saga.saga_id}:{index}")
    saga.steps.append(step)
    if refused is not None:
        step.status = Status.REJECTED.value
        result = Result(Status.REJECTED, reason=refused)
        yield from save(saga, clock, f"step {step.index} ({tool.name}) refused: {refused}")
    else:
        yield from save(saga, clock)  # the step's key is known before it runs
        result = yield CallTool(tool, arguments, step.key, saga.correlation_id, saga.call_id)
        step.status, step.output = result.status.value, result.output_json
    if result.ok:
        yield from save(saga, clock)
        return result
    yield from compensate(saga, tools, clock)
    return result


def finish(saga: Saga, clock: Clock) -> Ops[None]:
    """Every step completed."""
    saga.state = COMPLETED
    yield from save(saga, clock, f"saga {saga.saga_id} completed")


def compensate(saga: Saga, tools: dict[str, Tool[Any]], clock: Clock) -> Ops[None]:
    """Undo every completed step, newest first, each exactly once; stop for an operator
    at a step whose outcome is unknown or whose compensation keeps failing."""
    saga.state = COMPENSATING
    yield from save(saga, clock, f"saga {saga.saga_id} compensating")
    for step in reversed(saga.steps):
        if step.compensation in ("done", "not_needed"):
            continue
        if step.status in (Status.INDETERMINATE.value, "running"):
            why = (
                f"step {step.index} ({step.tool}) may or may not have happened: resolve its "
                "key (dar resolve), then dar sagas resume"
            )
            yield from stop(saga, NEEDS_OPERATOR, why, clock)
            return
        if step.status not in DONE or step.effect == Effect.READ.value:
            step.compensation = "not_needed"
            continue
        if step.effect == Effect.IRREVERSIBLE.value:
            why = (
                f"step {step.index} ({step.tool}) is irreversible and happened: the steps "
                "before it are not undone; an operator decides"
            )
            yield from stop(saga, NEEDS_OPERATOR, why, clock)
            return
        try:
            undone = yield from undo(saga, step, tools, clock)
        except SagaLost:
            raise
        except Exception as exc:  # a missing tool, a compensate_input that raises
            why = f"step {step.index} ({step.tool}) cannot be undone: {type(exc).__name__}: {exc}"
            yield from stop(saga, NEEDS_OPERATOR, why, clock)
            return
        if not undone:
            return
    saga.state, saga.error = COMPENSATED, None
    yield from save(saga, clock, f"saga {saga.saga_id} compensated")


def stop(saga: Saga, state: str, why: str, clock: Clock) -> Ops[None]:
    """The saga waits for an operator, saying why (in its row and in `dar sagas`)."""
    saga.state, saga.error = state, why
    yield from save(saga, clock, why)


def undo(saga: Saga, step: Step, tools: dict[str, Tool[Any]], clock: Clock) -> Ops[bool]:
    """Run one step's compensation (retried with backoff); False when the saga stopped."""
    tool = tools.get(step.tool)
    if tool is None or tool.compensate is None:
        raise ConfigurationError(f"register {step.tool!r} (with its compensate=) to undo it")
    args = json.loads(step.input)
    if tool.compensate_input is not None:
        args = tool.compensate_input(args, None if step.output is None else json.loads(step.output))
    while True:
        step.tries += 1
        key = f"compensate:{step.key}"
        result = yield CallTool(tool.compensate, args, key, saga.correlation_id, saga.call_id)
        if result.ok:
            step.compensation = "done"
            yield from save(saga, clock)
            return True
        if result.status is Status.INDETERMINATE:
            why = f"the compensation of step {step.index} ({step.tool}) is indeterminate"
            yield from stop(saga, NEEDS_OPERATOR, why, clock)
            return False
        if step.tries >= TRIES:
            step.compensation = "failed"
            why = (
                f"the compensation of step {step.index} ({step.tool}) failed {step.tries} "
                f"times: {result.error or result.reason}"
            )
            yield from stop(saga, COMPENSATION_FAILED, why, clock)
            return False
        yield from save(saga, clock)
        yield Wait("", BACKOFF * 2 ** (step.tries - 1))


def take_over(rec: SagaRecord, owner: str, clock: Clock) -> Ops[Saga | None]:
    """Hold an unfinished saga whose worker is gone (a saga waiting for an operator has
    no worker); None when another worker holds it."""
    stuck = rec.state in (NEEDS_OPERATOR, COMPENSATION_FAILED)
    held = rec.lease_until is not None and rec.lease_until > clock()  # (ours too: it runs)
    if held and not stuck:
        return None
    saga = Saga.of(rec, owner)
    for step in saga.steps:
        if step.compensation == "failed":  # an operator asked to try again
            step.compensation, step.tries = None, 0
    try:
        yield from save(saga, clock)
    except SagaLost:
        return None
    return saga


def settle(saga: Saga, tools: dict[str, Tool[Any]], clock: Clock) -> Ops[None]:
    """Find out, from their keys, what the steps a crash left unknown did (asking the
    tool's ``reconcile`` where the key cannot tell). The forward path is never resumed."""
    salt = None
    for step in saga.steps:
        if step.status not in ("running", Status.INDETERMINATE.value):
            continue
        if salt is None:
            salt = yield RedactionSalt()
        stored = own_key(step.tool, step.key, salt)
        claim: Claim | None = yield GetClaim(stored)
        step.status, step.output = what_happened(claim, clock())
        if step.status == Status.INDETERMINATE.value and claim is not None:
            call = claim.call_event_id or saga.call_id
            info = CallInfo(
                provider_key(salt, stored), call, saga.correlation_id, claim.attempts, step.tool
            )
            yield from ask_reconcile(step, claim, info, tools, clock)


def what_happened(claim: Claim | None, now: float) -> tuple[str, str | None]:
    """A step's outcome from its key's claim: done, never ran, still running, or unknown."""
    if claim is None or claim.state in (ClaimState.RELEASED.value, ClaimState.FAILED.value):
        return "not_run", None
    if claim.state == ClaimState.DONE.value:
        return Status.EXECUTED.value, claim.output
    if claim.state == ClaimState.RUNNING.value and (claim.lease_until or 0) > now:
        return "running", None  # its worker may still finish it: decide later
    return Status.INDETERMINATE.value, None


def ask_reconcile(
    step: Step, claim: Claim, info: CallInfo, tools: dict[str, Tool[Any]], clock: Clock
) -> Ops[None]:
    """Ask the tool whether the step's effect happened (`dar.current_call` answering the
    step's last attempt), and record the answer on its key (as `dar resolve` would);
    without a ``reconcile`` the step waits for an operator."""
    tool = tools.get(step.tool)
    if tool is None or tool.reconcile is None:
        return
    asked = yield CallReconcile(tool, json.loads(step.input), info)
    verdict = asked.value if asked.ok else None
    if not isinstance(verdict, Reconciled):
        return
    output = None
    if verdict.executed:
        try:
            output = canonical_json(verdict.output).decode("utf-8")
        except CanonicalizationError:
            output = "null"
    now = clock()
    row = resolved_row(claim, verdict.executed, output, "reconciled by saga recovery", now)
    yield Resolve(claim.key, verdict.executed, output, now, row, True)
    step.status = Status.EXECUTED.value if verdict.executed else "not_run"
    step.output = output


def recover(saga: Saga, tools: dict[str, Tool[Any]], clock: Clock) -> Ops[None]:
    """Finish a saga a crash interrupted: settle its unknown steps, then compensate (a
    saga that did not complete is never resumed forward)."""
    yield from settle(saga, tools, clock)
    yield from compensate(saga, tools, clock)


def recover_all(
    owner: str, tools: dict[str, Tool[Any]], clock: Clock, *, stuck: bool = False
) -> Ops[list[Saga]]:
    """Finish every open saga whose worker's lease ran out (and, with ``stuck``, those
    waiting for an operator, once the operator has acted). Returns the sagas handled."""
    states = UNFINISHED if stuck else (OPEN, COMPENSATING)
    handled = []
    for rec in (yield ListSagas(states)):
        saga = yield from take_over(rec, owner, clock)
        if saga is None:
            continue
        try:
            yield from recover(saga, tools, clock)
        except SagaLost:
            continue  # another worker holds it now
        except Exception as exc:  # this saga's code or set-up: the others still recover
            why = f"recovery stopped: {type(exc).__name__}: {exc}"
            yield from stop(saga, NEEDS_OPERATOR, why, clock)
        handled.append(saga)
    return handled


def listing(state: str | None) -> Ops[list[SagaRecord]]:
    if state is not None and state not in STATES:
        raise ConfigurationError(f"state must be one of {', '.join(STATES)}, not {state!r}")
    found: list[SagaRecord] = yield ListSagas(() if state is None else (state,))
    return found
