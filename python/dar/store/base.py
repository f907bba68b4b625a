"""The store interface: what the decision core asks of a database.

A store is deliberately thin: it has one method per operation record of `dar.core.ops`, each
one transaction (one round trip where the database allows), and every state change of a
claim appends its event row in the same transaction, so the log and the claims can never
disagree. All decisions live in `dar.core.decide` and `dar.core.verdict`; a store only executes the
conditional writes the core describes.

Stores are synchronous. `dar.runtime.aio.AsyncRuntime` runs them in worker threads and waits for
their change signals (`on_change`) on the event loop, so there is one store per database,
not a sync one and an async twin.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from dar.core.ops import (
    Append,
    CheckGuards,
    DecideApproval,
    Finish,
    GetApproval,
    GetClaim,
    GetRun,
    GetSaga,
    GrantAnswer,
    GuardDecision,
    ListApprovals,
    ListRuns,
    ListSagas,
    LogFilter,
    Lookup,
    Mark,
    RequestApproval,
    ReserveGuards,
    Resolve,
    SaveRun,
    SaveSaga,
    SettleGuards,
    Take,
    TakeOrLookup,
    UseGrant,
)
from dar.errors import ConfigurationError
from dar.records import Approval, Claim, Event, NewEvent, RunRecord, SagaRecord
from dar.store.sql import SessionFilter, SessionRow


@runtime_checkable
class Store(Protocol):
    """A store (SQLite, Postgres). Safe to share between threads."""

    def migrate(self) -> list[str]:
        """Apply pending migrations; return the names applied. Safe to call concurrently."""
        ...

    def get_claim(self, op: GetClaim) -> Claim | None:
        """See `dar.core.ops.GetClaim`."""
        ...

    def lookup(self, op: Lookup) -> tuple[Claim | None, bool]:
        """See `dar.core.ops.Lookup`."""
        ...

    def take(self, op: Take) -> bool:
        """See `dar.core.ops.Take`."""
        ...

    def take_or_lookup(self, op: TakeOrLookup) -> tuple[bool, Claim | None]:
        """See `dar.core.ops.TakeOrLookup`."""
        ...

    def finish(self, op: Finish) -> bool:
        """See `dar.core.ops.Finish`."""
        ...

    def mark(self, op: Mark) -> bool:
        """See `dar.core.ops.Mark`."""
        ...

    def resolve(self, op: Resolve) -> Claim:
        """See `dar.core.ops.Resolve`."""
        ...

    def append(self, op: Append) -> None:
        """See `dar.core.ops.Append`."""
        ...

    def events(self, filter: LogFilter) -> list[Event]:
        """Read the log in append order, filtered (this store's buffered rows included)."""
        ...

    def redaction_salt(self) -> str:
        """The database's random salt for hashing redacted values (made by the migration)."""
        ...

    def request_approval(self, op: RequestApproval) -> str:
        """See `dar.core.ops.RequestApproval`."""
        ...

    def use_grant(self, op: UseGrant) -> GrantAnswer:
        """See `dar.core.ops.UseGrant`."""
        ...

    def get_approval(self, op: GetApproval) -> Approval | None:
        """See `dar.core.ops.GetApproval`."""
        ...

    def decide_approval(self, op: DecideApproval) -> Approval | None:
        """See `dar.core.ops.DecideApproval`."""
        ...

    def approvals(self, op: ListApprovals) -> list[Approval]:
        """See `dar.core.ops.ListApprovals`."""
        ...

    def save_saga(self, op: SaveSaga) -> bool:
        """See `dar.core.ops.SaveSaga`."""
        ...

    def get_saga(self, op: GetSaga) -> SagaRecord | None:
        """See `dar.core.ops.GetSaga`."""
        ...

    def sagas(self, op: ListSagas) -> list[SagaRecord]:
        """See `dar.core.ops.ListSagas`."""
        ...

    def save_run(self, op: SaveRun) -> bool:
        """See `dar.core.ops.SaveRun`."""
        ...

    def get_run(self, op: GetRun) -> RunRecord | None:
        """See `dar.core.ops.GetRun`."""
        ...

    def runs(self, op: ListRuns) -> list[RunRecord]:
        """See `dar.core.ops.ListRuns`."""
        ...

    def reserve_guards(self, op: ReserveGuards) -> GuardDecision:
        """See `dar.core.ops.ReserveGuards`."""
        ...

    def check_guards(self, op: CheckGuards) -> GuardDecision:
        """See `dar.core.ops.CheckGuards`."""
        ...

    def settle_guards(self, op: SettleGuards) -> None:
        """See `dar.core.ops.SettleGuards`."""
        ...

    def on_change(self, key: str, wake: Callable[[], None]) -> Callable[[], None] | None:
        """Call ``wake`` (from any thread) when the claim of ``key`` may have changed;
        returns a function that stops that, or None when this store cannot signal and
        waiters poll."""
        ...

    def flush(self) -> None:
        """Write buffered rows now."""
        ...

    def close(self) -> None:
        """Write buffered rows and release connections."""
        ...


@runtime_checkable
class AdminStore(Store, Protocol):
    """What the `dar` command needs beyond the runtime: postmortem reads and retention."""

    def chain_heads(self, only: str | None = None) -> dict[str, str]:
        """The current head of every correlation id's hash chain (``""`` for none); with
        ``only``, of that one (a session's view need not read a head per session)."""
        ...

    def checkpoints(self) -> dict[str, str]:
        """Per chain, the hash of the last row removed by `purge` (where verify resumes)."""
        ...

    def purge_records(self) -> list[dict[str, Any]]:
        """Each purge's checkpoints, in order (``{chain: {"seq": n, "row_hash": h}}``)."""
        ...

    def sessions(self, filter: SessionFilter) -> list[SessionRow]:
        """The sessions (correlation ids) with their counts, newest activity first, as
        aggregates computed by the database (see `dar.store.sql.sessions_query`)."""
        ...

    def claims(self) -> list[Claim]:
        """Every claim (for `verify`: what a cache hit answers must match the log)."""
        ...

    def gc(self, now: float) -> int:
        """Delete claims that can no longer answer: released, or done/failed and expired.
        Returns how many. The event log is not touched."""
        ...

    def purge(self, before: dt.datetime, now: float, event: NewEvent) -> tuple[int, dict[str, Any]]:
        """Delete events created before ``before`` through the one administrative path
        (the append-only trigger is lifted for this transaction only), record the purge
        with each chain's last purged hash, and append ``event``. Returns the number of
        rows removed and the checkpoints."""
        ...


def seconds_option(options: dict[str, str], name: str) -> float:
    """A URL's query option given in seconds (``?busy_timeout=2.5``): a finite number >= 0."""
    text = options[name]
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(
            f"the database URL's option {name}={text!r} must be a number of seconds >= 0"
        )
    return value
