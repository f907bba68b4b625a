"""The store interface: what the decision core asks of a database.

A store is deliberately thin: each method is one transaction (one round trip where the
database allows), and every state change of a claim appends its event row in the same
transaction, so the log and the claims can never disagree. All decisions live in
`dar.decide`; a store only executes conditional writes the core describes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol, runtime_checkable

from dar.records import Claim, Event, NewEvent


@runtime_checkable
class Store(Protocol):
    """A synchronous store (SQLite, Postgres)."""

    def migrate(self) -> list[str]:
        """Apply pending migrations; return the names applied. Safe to call concurrently."""
        ...

    def lookup(
        self, key: str, input_hash: str, now: float, hit: NewEvent
    ) -> tuple[Claim | None, bool]:
        """Read the claim of ``key``. If it is ``done``, unexpired at ``now`` and has
        ``input_hash``, append ``hit`` (with the recorded output and attempt) in the same
        transaction and return ``(claim, True)``; otherwise ``(claim or None, False)``."""
        ...

    def claim_or_lookup(
        self,
        key: str,
        tool_name: str,
        input_hash: str,
        owner: str,
        lease_until: float,
        now: float,
        started: NewEvent,
        hit: NewEvent,
    ) -> tuple[bool, Claim | None]:
        """For a call no rule judges: claim ``key`` if no claim exists (as ``claim`` with
        ``expect_version=None``) and return ``(True, None)``; otherwise behave as ``lookup``
        and return ``(False, claim)`` — ``(False, None)`` when a concurrent claim is not yet
        visible, and the caller looks again."""
        ...

    def claim(
        self,
        key: str,
        tool_name: str,
        input_hash: str,
        owner: str,
        lease_until: float,
        now: float,
        expect_version: int | None,
        started: NewEvent,
    ) -> bool:
        """Take ``key`` for ``owner`` until ``lease_until``: insert it when
        ``expect_version`` is None and no claim exists, or replace the claim whose version
        is ``expect_version``. On success append ``started`` and return True; otherwise
        change nothing and return False."""
        ...

    def finish(
        self,
        key: str,
        owner: str,
        state: str,
        output: str | None,
        error: str | None,
        now: float,
        expires_at: float | None,
        event: NewEvent,
    ) -> bool:
        """Move ``owner``'s running claim to ``state`` (done, failed, released,
        indeterminate) and append ``event``. The event is appended even when the claim is
        no longer ``owner``'s (the effect happened regardless); returns whether it was."""
        ...

    def mark(self, key: str, expect_version: int, state: str, event: NewEvent) -> bool:
        """Set the state of the claim at ``expect_version`` and append ``event``; False
        (and nothing written) when the claim moved on."""
        ...

    def resolve(
        self, key: str, executed: bool, output: str | None, now: float, event: NewEvent
    ) -> Claim:
        """Operator decision on an indeterminate (or stuck running) claim: ``executed``
        records it as done with ``output``; otherwise it is released to run again.
        Raises ``KeyError`` when there is no such claim, ``ValueError`` when it is done."""
        ...

    def wait(self, key: str, seconds: float) -> float:
        """Wait up to ``seconds`` for ``key``'s claim to change (woken early where the
        database can signal it); return the seconds actually waited."""
        ...

    def append(self, event: NewEvent) -> None:
        """Append one event row."""
        ...

    def get_claim(self, key: str) -> Claim | None:
        """The claim of ``key``, if any."""
        ...

    def events(
        self,
        *,
        correlation_id: str | None = None,
        tool: str | None = None,
        status: str | None = None,
        key: str | None = None,
        since: dt.datetime | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Read the log in append order, filtered."""
        ...

    def redaction_salt(self) -> str:
        """The database's random salt for hashing redacted values (made by the migration)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class AdminStore(Store, Protocol):
    """What the `dar` command needs beyond the runtime: postmortem reads and retention."""

    def chain_heads(self) -> dict[str, str]:
        """The current head of every correlation id's hash chain (``""`` for none)."""
        ...

    def checkpoints(self) -> dict[str, str]:
        """Per chain, the hash of the last row removed by `purge` (where verify resumes)."""
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


@runtime_checkable
class AsyncStore(Protocol):
    """The asyncio twin of ``Store``: the same methods with the same meaning, awaited.

    Call ``await store.open()`` (idempotent) before first use; it applies migrations.
    """

    async def open(self) -> None:
        """Connect and migrate."""
        ...

    async def migrate(self) -> list[str]:
        """See ``Store.migrate``."""
        ...

    async def lookup(
        self, key: str, input_hash: str, now: float, hit: NewEvent
    ) -> tuple[Claim | None, bool]:
        """See ``Store.lookup``."""
        ...

    async def claim_or_lookup(
        self,
        key: str,
        tool_name: str,
        input_hash: str,
        owner: str,
        lease_until: float,
        now: float,
        started: NewEvent,
        hit: NewEvent,
    ) -> tuple[bool, Claim | None]:
        """See ``Store.claim_or_lookup``."""
        ...

    async def claim(
        self,
        key: str,
        tool_name: str,
        input_hash: str,
        owner: str,
        lease_until: float,
        now: float,
        expect_version: int | None,
        started: NewEvent,
    ) -> bool:
        """See ``Store.claim``."""
        ...

    async def finish(
        self,
        key: str,
        owner: str,
        state: str,
        output: str | None,
        error: str | None,
        now: float,
        expires_at: float | None,
        event: NewEvent,
    ) -> bool:
        """See ``Store.finish``."""
        ...

    async def mark(self, key: str, expect_version: int, state: str, event: NewEvent) -> bool:
        """See ``Store.mark``."""
        ...

    async def resolve(
        self, key: str, executed: bool, output: str | None, now: float, event: NewEvent
    ) -> Claim:
        """See ``Store.resolve``."""
        ...

    async def wait(self, key: str, seconds: float) -> float:
        """See ``Store.wait``."""
        ...

    async def append(self, event: NewEvent) -> None:
        """See ``Store.append``."""
        ...

    async def get_claim(self, key: str) -> Claim | None:
        """See ``Store.get_claim``."""
        ...

    async def events(
        self,
        *,
        correlation_id: str | None = None,
        tool: str | None = None,
        status: str | None = None,
        key: str | None = None,
        since: dt.datetime | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """See ``Store.events``."""
        ...

    async def redaction_salt(self) -> str:
        """See ``Store.redaction_salt``."""
        ...

    async def close(self) -> None:
        """See ``Store.close``."""
        ...
