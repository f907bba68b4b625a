"""The steps of a store plan written once for both dialects (approvals, sagas).

A plan yields `Sql` statements (named ``:params``), `AppendRow` (an event row, linked into
its chain by the store), `Wake` (wake the calls waiting on a key) and `Lock` (serialize
with the transactions that lock the same key); `SQLiteStore` runs it
in one write transaction, `PostgresStore` in one transaction with ``%(name)s`` parameters
and a NOTIFY for each wake.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Literal

from dar.records import NewEvent


@dataclass(frozen=True, slots=True)
class Sql:
    sql: str
    params: dict[str, Any]
    rows: Literal["one", "all", "none"] = "one"


@dataclass(frozen=True, slots=True)
class AppendRow:
    event: NewEvent


@dataclass(frozen=True, slots=True)
class Wake:
    key: str


@dataclass(frozen=True, slots=True)
class Lock:
    """Serialize with the other transactions that lock ``key`` until this one ends (a
    Postgres advisory lock; SQLite's write transaction is serialized already)."""

    key: str


Step = Sql | AppendRow | Wake | Lock
Steps = Generator[Step, Any, Any]
