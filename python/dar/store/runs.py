"""Durable runs in the database, written once for both dialects (see `dar.store.steps`)."""

from __future__ import annotations

from dataclasses import astuple

from dar.core.ops import GetRun, ListRuns, SaveRun
from dar.records import RUN_COLUMNS, RunRecord
from dar.store.steps import Sql, Steps

COLUMNS = ", ".join(RUN_COLUMNS)


def save(table: str, op: SaveRun) -> Steps:
    values = dict(zip(RUN_COLUMNS, astuple(op.run), strict=True))
    if op.expect_version is None:
        placeholders = ", ".join(f":{c}" for c in RUN_COLUMNS)
        row = yield Sql(
            f"INSERT INTO {table} ({COLUMNS}) VALUES ({placeholders})"
            " ON CONFLICT (session_id) DO NOTHING RETURNING 1",
            values,
        )
    else:
        sets = ", ".join(f"{c} = :{c}" for c in RUN_COLUMNS if c != "session_id")
        row = yield Sql(
            f"UPDATE {table} SET {sets} WHERE session_id = :session_id"
            " AND version = :expect RETURNING 1",
            {**values, "expect": op.expect_version},
        )
    return row is not None


def get(table: str, op: GetRun) -> Steps:
    row = yield Sql(f"SELECT {COLUMNS} FROM {table} WHERE session_id = :id", {"id": op.session_id})
    return None if row is None else RunRecord(*row)


def listing(table: str, op: ListRuns) -> Steps:
    where, params = "", {}
    if op.states:
        names = [f":s{i}" for i in range(len(op.states))]
        where = f" WHERE state IN ({', '.join(names)})"
        params = {f"s{i}": state for i, state in enumerate(op.states)}
    rows = yield Sql(f"SELECT {COLUMNS} FROM {table}{where} ORDER BY created_at", params, "all")
    return [RunRecord(*r) for r in rows]
