"""A worker process on one of `tests.support.hosts`' hosts: ``python -m
tests.support.host_worker JOB`` (JOB a JSON object, fields below).

Its tool ``deliver`` is an external effect counted in a table of the same Postgres
(``effects``: one row per run of the effect, with the host's address as the server saw it),
and its ``reconcile`` asks that table, as a real reconcile would ask the system it changed.
A ``burst`` job calls ``deliver`` for each key in ``keys`` and prints each key's status; with
``hang_after`` its handler hangs forever on its run after that many (having made the effect
first when ``effect_before_hang``), after writing the key to ``marks``/``name``: the parent
kills it there. A ``bench`` job makes distinct fresh calls of a no-op tool for ``seconds``
and prints how many it made.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from dar import Effect, Reconciled, Runtime, tool


def ready_then_wait(job: dict[str, Any]) -> None:
    """Say this worker is ready, then wait for the parent's go (a file: every host shares
    the file system, only the network is separate)."""
    Path(job["marks"], f"ready-{job['name']}").touch()
    while not Path(job["go"]).exists():
        time.sleep(0.005)


def effect_tool(job: dict[str, Any]) -> Any:
    conn = psycopg.connect(job["dsn"], autocommit=True)
    effects = f'"{job["schema"]}".effects'
    ran = [0]

    def effect(key: int) -> str:
        row = conn.execute(
            f"INSERT INTO {effects} VALUES (%s, host(inet_client_addr())) RETURNING host",
            (key,),
        ).fetchone()
        assert row is not None
        return str(row[0])

    def deliver(key: int) -> dict[str, Any]:
        if job.get("hang_after") is not None and ran[0] >= job["hang_after"]:
            if job["effect_before_hang"]:
                effect(key)
            Path(job["marks"], job["name"]).write_text(str(key))
            time.sleep(3600)
        ran[0] += 1
        host = effect(key)
        time.sleep(job.get("sleep", 0.0))
        return {"key": key, "host": host}

    def reconcile(inp: dict[str, Any]) -> Reconciled:
        row = conn.execute(f"SELECT host FROM {effects} WHERE key = %s", (inp["key"],)).fetchone()
        return Reconciled(False) if row is None else Reconciled(True, {"key": inp["key"]})

    return tool(
        name="deliver", effect=Effect.MUTATE_EXTERNAL, lease=job["lease"], reconcile=reconcile
    )(deliver)


def burst(job: dict[str, Any]) -> dict[str, Any]:
    rt = Runtime(job["url"], wait=job["wait"])
    deliver = effect_tool(job)
    ready_then_wait(job)
    statuses = {}
    for key in job["keys"]:
        statuses[str(key)] = rt.execute(deliver, {"key": key}).status.value
    rt.close()
    return {"statuses": statuses}


@tool(effect=Effect.MUTATE_EXTERNAL)
def noop(key: str) -> dict[str, Any]:
    return {}


def bench(job: dict[str, Any]) -> dict[str, Any]:
    rt = Runtime(job["url"])
    rt.execute(noop, {"key": f"{job['name']}:warm"})
    ready_then_wait(job)
    calls = 0
    end = time.perf_counter() + job["seconds"]
    while time.perf_counter() < end:
        rt.execute(noop, {"key": f"{job['name']}:{calls}"})
        calls += 1
    rt.close()
    return {"calls": calls}


if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    print(json.dumps(burst(job) if job["mode"] == "burst" else bench(job)), flush=True)
