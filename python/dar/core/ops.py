"""The typed operations the decision core yields, and the drivers execute.

There are two families. Store operations (`Lookup`, `Take`, `Finish`, ...) are one frozen
record each; a store has one method per record type, and `op.apply(store)` is the only
dispatch — by type, never by a method name. User-code operations (`CheckRule`,
`CallHandler`, `CallReconcile`) and `Wait` are run by the driver itself, because only it
knows whether it is sync or async.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from dar.context import CallInfo
from dar.core.states import ClaimState
from dar.errors import ConfigurationError
from dar.records import Approval, Claim, Event, NewEvent, RunRecord, SagaRecord

if TYPE_CHECKING:
    from dar.rules import Rule, RuleContext
    from dar.store.base import Store
    from dar.tools import Tool


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which rows of the log to read; filters combine, rows come in append order."""

    correlation_id: str | None = None
    tool: str | None = None
    status: str | None = None
    key: str | None = None
    since: dt.datetime | None = None
    limit: int | None = None
    #: One row by its id (an indexed point read: `dar.integrations.otel` reads the chain
    #: hash of a call's outcome row with it).
    event_id: str | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 0):
            raise ConfigurationError(f"limit must be a whole number >= 0, not {self.limit!r}")


# --- store operations ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetClaim:
    """Read the claim of ``key``. Answer: ``Claim | None``."""

    key: str

    def apply(self, store: Store) -> Claim | None:
        return store.get_claim(self)


@dataclass(frozen=True, slots=True)
class Lookup:
    """Read the claim of ``key``; when it answers this call from the record (a hit, as
    `dar.core.verdict.classify` judges it), append ``hit`` in the same step.
    Answer: ``(claim or None, hit logged)``."""

    key: str
    input_hash: str
    now: float
    hit: NewEvent

    def apply(self, store: Store) -> tuple[Claim | None, bool]:
        return store.lookup(self)


@dataclass(frozen=True, slots=True)
class Take:
    """Take ``key`` for ``owner`` until ``lease_until``: insert the claim when
    ``expect_version`` is None and none exists, or replace the claim at
    ``expect_version``; on success append ``started``. Answer: whether it was taken."""

    key: str
    tool_name: str
    input_hash: str
    owner: str
    lease_until: float
    now: float
    expect_version: int | None
    started: NewEvent

    def apply(self, store: Store) -> bool:
        return store.take(self)


@dataclass(frozen=True, slots=True)
class TakeOrLookup:
    """For a call no rule judges: ``take`` (with ``expect_version=None``) when no claim
    exists, else behave as ``Lookup`` with ``hit``. Answer: ``(True, None)`` when taken,
    else ``(False, claim)`` — ``(False, None)`` when a concurrent claim is not yet visible,
    and the caller looks again."""

    take: Take
    hit: NewEvent

    def apply(self, store: Store) -> tuple[bool, Claim | None]:
        return store.take_or_lookup(self)


@dataclass(frozen=True, slots=True)
class Finish:
    """Move ``owner``'s running claim of ``key`` to ``state`` with its outcome, and
    append ``event`` — also when the claim is no longer ``owner``'s (the effect happened
    regardless). Answer: whether the claim was still ``owner``'s."""

    key: str
    owner: str
    state: ClaimState
    output: str | None
    error: str | None
    now: float
    expires_at: float | None
    event: NewEvent

    def apply(self, store: Store) -> bool:
        return store.finish(self)


@dataclass(frozen=True, slots=True)
class Mark:
    """Set the state of the claim at ``expect_version`` and append ``event``.
    Answer: False (nothing written) when the claim moved on."""

    key: str
    expect_version: int
    state: ClaimState
    event: NewEvent

    def apply(self, store: Store) -> bool:
        return store.mark(self)


@dataclass(frozen=True, slots=True)
class Resolve:
    """An operator's decision on an indeterminate (or stuck running) claim: ``executed``
    records it done with ``output``; otherwise it is released to run again. Raises
    ``KeyError`` for no such claim, ``ValueError`` when it cannot be resolved (done, or
    running under a live lease unless ``force``).
    Answer: the claim after."""

    key: str
    executed: bool
    output: str | None
    now: float
    event: NewEvent
    #: Also decide a claim whose worker still holds a live lease (it may be running now).
    force: bool = False

    def apply(self, store: Store) -> Claim:
        return store.resolve(self)


@dataclass(frozen=True, slots=True)
class Append:
    """Append one row. Answer: None."""

    event: NewEvent

    def apply(self, store: Store) -> None:
        store.append(self)


@dataclass(frozen=True, slots=True)
class ReadLog:
    """Read the log. Answer: ``list[Event]``."""

    filter: LogFilter

    def apply(self, store: Store) -> list[Event]:
        return store.events(self.filter)


@dataclass(frozen=True, slots=True)
class RedactionSalt:
    """The database's random salt for redacted values. Answer: ``str``."""

    def apply(self, store: Store) -> str:
        return store.redaction_salt()


@dataclass(frozen=True, slots=True)
class GrantAnswer:
    """What the store knows of a binding: ``granted`` (this call took the grant: it is now
    used), or the latest decision: ``pending``, ``denied``, ``used``, ``expired``, ``none``."""

    kind: str
    approval: Approval | None = None


@dataclass(frozen=True, slots=True)
class RequestApproval:
    """Open a request for ``approval`` (pending), with its row. When the binding already
    has an open request, nothing is written. Answer: the open request's id."""

    approval: Approval
    event: NewEvent

    def apply(self, store: Store) -> str:
        return store.request_approval(self)


@dataclass(frozen=True, slots=True)
class UseGrant:
    """Take the binding's approved, unexpired grant for the call ``used_by`` (single use:
    of concurrent takers exactly one gets it). Answer: a ``GrantAnswer``."""

    binding: str
    now: float
    used_by: str

    def apply(self, store: Store) -> GrantAnswer:
        return store.use_grant(self)


@dataclass(frozen=True, slots=True)
class GetApproval:
    """One approval by id. Answer: ``Approval | None``."""

    approval_id: str

    def apply(self, store: Store) -> Approval | None:
        return store.get_approval(self)


@dataclass(frozen=True, slots=True)
class DecideApproval:
    """A person's decision on a pending request, with its row; the waiting calls are
    woken. Answer: the decided ``Approval``, or None when it was no longer pending."""

    approval_id: str
    approve: bool
    by: str
    note: str | None
    now: float
    expires_at: float | None
    signature: str | None
    event: NewEvent
    #: The person's edit of the arguments (canonical JSON, its hash); None: as asked.
    edited_input: str | None = None
    edited_hash: str | None = None

    def apply(self, store: Store) -> Approval | None:
        return store.decide_approval(self)


@dataclass(frozen=True, slots=True)
class ListApprovals:
    """Approvals, newest first. ``status`` filters by `Approval.state`. Answer: a list."""

    status: str | None
    correlation_id: str | None
    now: float

    def apply(self, store: Store) -> list[Approval]:
        return store.approvals(self)


@dataclass(frozen=True, slots=True)
class SaveSaga:
    """Write a saga's new state if it is still at ``expect_version`` (None: insert it),
    with its row when given. Answer: whether it was written."""

    saga: SagaRecord
    expect_version: int | None
    event: NewEvent | None = None

    def apply(self, store: Store) -> bool:
        return store.save_saga(self)


@dataclass(frozen=True, slots=True)
class GetSaga:
    """One saga by id. Answer: ``SagaRecord | None``."""

    saga_id: str

    def apply(self, store: Store) -> SagaRecord | None:
        return store.get_saga(self)


@dataclass(frozen=True, slots=True)
class ListSagas:
    """Sagas in the given states (all when empty), oldest first. Answer: a list."""

    states: tuple[str, ...] = ()

    def apply(self, store: Store) -> list[SagaRecord]:
        return store.sagas(self)


@dataclass(frozen=True, slots=True)
class SaveRun:
    """Insert ``run`` (``expect_version`` None: only when no run has its session id) or
    move it from ``expect_version`` to ``run.version``. Answer: whether it was written."""

    run: RunRecord
    expect_version: int | None

    def apply(self, store: Store) -> bool:
        return store.save_run(self)


@dataclass(frozen=True, slots=True)
class GetRun:
    """One run by session id. Answer: ``RunRecord | None``."""

    session_id: str

    def apply(self, store: Store) -> RunRecord | None:
        return store.get_run(self)


@dataclass(frozen=True, slots=True)
class ListRuns:
    """Runs in these states (all when empty), oldest first. Answer: ``list[RunRecord]``."""

    states: tuple[str, ...] = ()

    def apply(self, store: Store) -> list[RunRecord]:
        return store.runs(self)


@dataclass(frozen=True, slots=True)
class GuardRow:
    """One call's share of one guard's scope (`dar.guards`), as stored: its ``amount``
    (Budget) or its ``text`` and ``vector`` (Similar). ``claim_state`` is read, never
    written: the state of the claim this call took under ``event_id`` (None: none)."""

    reservation_id: str
    tool_name: str
    guard: str
    scope: str
    amount: float
    text: str | None
    vector: tuple[float, ...] | None
    idempotency_key: str | None
    event_id: str
    created_at: float
    state: str
    held_until: float | None
    claim_state: str | None = None


@dataclass(frozen=True, slots=True)
class GuardScan:
    """Which rows one guard reads: its scope's rows of ``tool_name`` since ``since``."""

    tool_name: str
    guard: str
    scope: str
    since: float

    @property
    def lock_key(self) -> str:
        """What serializes the calls of one scope (a Postgres advisory lock's key)."""
        return f"dar-guard\x1f{self.tool_name}\x1f{self.guard}\x1f{self.scope}"


@dataclass(frozen=True, slots=True)
class GuardDecision:
    """What the guards say of a call: ``rows`` to write (its shares) when it may go on;
    else the first ``refusal`` as ``(guard name, then, reason)`` — ``then`` is
    ``"reject"`` or ``"hold"``; ``flags`` are the ``(guard name, reason)`` of guards that
    let it run marked. ``supersede``: this call's earlier held rows (its key's) are
    released as its new ones are written."""

    rows: tuple[GuardRow, ...] = ()
    refusal: tuple[str, str, str] | None = None
    flags: tuple[tuple[str, str], ...] = ()
    supersede: str | None = None


@dataclass(frozen=True, slots=True)
class ReserveGuards:
    """In one transaction serialized per scope (an advisory lock per scan on Postgres,
    ``BEGIN IMMEDIATE`` on SQLite): read each scan's rows, answer ``decide(rows per
    scan)`` and write the rows it returns. Answer: the ``GuardDecision``."""

    scans: tuple[GuardScan, ...]
    decide: Callable[[list[list[GuardRow]]], GuardDecision]

    def apply(self, store: Store) -> GuardDecision:
        return store.reserve_guards(self)


@dataclass(frozen=True, slots=True)
class CheckGuards:
    """`ReserveGuards` that writes nothing (a dry run's preview). Answer: the decision."""

    scans: tuple[GuardScan, ...]
    decide: Callable[[list[list[GuardRow]]], GuardDecision]

    def apply(self, store: Store) -> GuardDecision:
        return store.check_guards(self)


@dataclass(frozen=True, slots=True)
class SettleGuards:
    """Move the held shares of the call ``event_id`` (of the key ``key``, when given: a
    crashed attempt's, adopted) to ``state`` (``used``, ``released``, or ``held`` with a
    new ``held_until``: None keeps them for good). Answer: None."""

    event_id: str
    state: str
    held_until: float | None = None
    key: str | None = None

    def apply(self, store: Store) -> None:
        store.settle_guards(self)


StoreOp = (
    GetClaim
    | Lookup
    | Take
    | TakeOrLookup
    | Finish
    | Mark
    | Resolve
    | Append
    | ReadLog
    | RedactionSalt
    | RequestApproval
    | UseGrant
    | GetApproval
    | DecideApproval
    | ListApprovals
    | SaveSaga
    | GetSaga
    | ListSagas
    | SaveRun
    | GetRun
    | ListRuns
    | ReserveGuards
    | CheckGuards
    | SettleGuards
)


# --- operations the driver runs itself -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait up to ``seconds`` for the claim of ``key`` to change (woken early where the
    store can signal it). Answer: the seconds actually waited."""

    key: str
    seconds: float


@dataclass(frozen=True, slots=True)
class CheckRule:
    """Run one rule check. Answer: a ``Deny`` (refused, also for errors) or None."""

    rule: Rule
    input: dict[str, Any]
    ctx: RuleContext


@dataclass(frozen=True, slots=True)
class CallHandler:
    """Run the tool's handler with the call's context set (`dar.current_call` answers
    ``info``), for at most the tool's ``timeout``. Answer: an ``Outcome``."""

    tool: Tool[Any]
    input: dict[str, Any]
    info: CallInfo


@dataclass(frozen=True, slots=True)
class CallReconcile:
    """Ask the tool's ``reconcile`` whether a crashed call's effect happened (with
    `dar.current_call` answering ``info`` when given). Answer: an ``Outcome`` whose value
    should be a ``Reconciled``."""

    tool: Tool[Any]
    input: dict[str, Any]
    info: CallInfo | None = None


@dataclass(frozen=True, slots=True)
class CallSimulate:
    """Ask the tool's ``simulate`` what the call would do (it has no effects). Answer: an
    ``Outcome`` whose value is the preview."""

    tool: Tool[Any]
    input: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallTool:
    """Make one ordinary `dar` call of ``tool`` with this key, as a child of the saga's
    row. Answer: its ``Result``."""

    tool: Tool[Any]
    input: Any
    key: str
    correlation_id: str | None
    parent_event_id: str


@dataclass(frozen=True, slots=True)
class Embed:
    """Embed ``texts`` with the runtime's embedder (checked by `dar.embedding.embed`).
    Answer: one vector per text, or a ``ConfigurationError`` raised by the embedder."""

    texts: tuple[str, ...]


Op = StoreOp | Wait | CheckRule | CallHandler | CallReconcile | CallSimulate | CallTool | Embed

T = TypeVar("T")

#: A decision of the core: yields operations, receives their answers, returns a ``T``.
Ops = Generator[Op, Any, T]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What running user code produced: a value, or the error it raised."""

    ok: bool
    value: Any = None
    error: str | None = None
    duration_ms: float = 0.0
    #: The code was interrupted (asyncio cancellation, KeyboardInterrupt): the driver
    #: re-raises the interruption once the core has recorded it.
    interrupt: BaseException | None = None
    #: The handler was still running at its tool's ``timeout`` (these seconds): the driver
    #: stopped waiting for it, so whether its effect happened is unknown.
    timed_out: float | None = None
    #: Interrupted while the handler's thread runs on (Python cannot stop a thread): its
    #: key may not be released, even for an effect that may simply run again.
    still_running: bool = False
