"""Sagas in the database, written once for both dialects (see `dar.store.steps`)."""

from __future__ import annotations

from dataclasses import astuple

from dar.core.ops import GetSaga, ListSagas, SaveSaga
from dar.records import SAGA_COLUMNS, SagaRecord
from dar.store.steps import AppendRow, Sql, Steps

COLUMNS = ", ".join(SAGA_COLUMNS)


def save(table: str, op: SaveSaga) -> Steps:
    values = dict(zip(SAGA_COLUMNS, astuple(op.saga), strict=True))
    if op.expect_version is None:
        placeholders = ", ".join(f":{c}" for c in SAGA_COLUMNS)
        row = yield Sql(
            f"INSERT INTO {table} ({COLUMNS}) VALUES ({placeholders})"
            " ON CONFLICT (saga_id) DO NOTHING RETURNING 1",
            values,
        )
    else:
        sets = ", ".join(f"{c} = :{c}" for c in SAGA_COLUMNS if c != "saga_id")
        row = yield Sql(
            f"UPDATE {table} SET {sets} WHERE saga_id = :saga_id AND version = :expect RETURNING 1",
            {**values, "expect": op.expect_version},
        )
    if row is None:
        return False
    if op.event is not None:
        yield AppendRow(op.event)
    return True


def get(table: str, op: GetSaga) -> Steps:
    row = yield Sql(f"SELECT {COLUMNS} FROM {table} WHERE saga_id = :id", {"id": op.saga_id})
    return None if row is None else SagaRecord(*row)


def listing(table: str, op: ListSagas) -> Steps:
    where, params = "", {}
    if op.states:
        names = [f":s{i}" for i in range(len(op.states))]
        where = f" WHERE state IN ({', '.join(names)})"
        params = {f"s{i}": state for i, state in enumerate(op.states)}
    rows = yield Sql(f"SELECT {COLUMNS} FROM {table}{where} ORDER BY created_at", params, "all")
    return [SagaRecord(*r) for r in rows]
