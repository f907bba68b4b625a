"""Workers on two hosts (network namespaces, each with its own address) sharing one
Postgres: each key's effect happens once whoever races for it, and when every worker of
one host is killed mid-burst, the other host takes their claims over once the leases run
out: reconcile finds the effects that happened, the others run, none runs twice."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dar import Runtime
from tests.conftest import fresh_schema
from tests.support.hosts import Hosts, release, results, verify_log
from tests.support.pg import LocalServer, _bindir


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    h = Hosts(2)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="module")
def server(hosts: Hosts) -> Iterator[LocalServer]:
    """The database host: Postgres listening on the bridge the hosts are on."""
    bindir = _bindir()
    assert bindir is not None, "the many-host tests need Postgres binaries (pg_ctl)"
    s = LocalServer(bindir, listen=(hosts.server_address,))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def shared(server: LocalServer, hosts: Hosts, tmp_path: Path) -> dict[str, Any]:
    """A schema with `dar`'s tables and the effects table, and what every job shares."""
    schema = fresh_schema()
    dsn = server.url_at(hosts.server_address)
    Runtime(f"{server.url}?schema={schema}").close()  # migrated once, before the race
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{schema}".effects (key int NOT NULL, host text NOT NULL)')
    (tmp_path / "marks").mkdir()
    return {
        "mode": "burst",
        "url": f"{dsn}?schema={schema}",
        "dsn": dsn,
        "schema": schema,
        "go": str(tmp_path / "go"),
        "marks": str(tmp_path / "marks"),
        "effect_before_hang": False,
    }


def effects(server: LocalServer, schema: str) -> tuple[Counter[int], set[str]]:
    """How many times each key's effect ran, and the client addresses that ran them."""
    with psycopg.connect(server.url) as conn:
        rows = conn.execute(f'SELECT key, host FROM "{schema}".effects').fetchall()
    return Counter(key for key, _ in rows), {host for _, host in rows}


def test_each_effect_runs_once_with_workers_on_two_hosts_racing_for_every_key(
    hosts: Hosts, server: LocalServer, shared: dict[str, Any], tmp_path: Path
) -> None:
    keys = list(range(24))
    procs = []
    for i in range(4):  # two workers per host, each calling every key in its own order
        order = random.Random(i).sample(keys, len(keys))
        job = {**shared, "name": f"w{i}", "keys": order, "lease": 30, "wait": 30}
        procs.append(hosts.spawn(i % 2, job))
    release(shared["go"], shared["marks"], [f"w{i}" for i in range(4)])
    outcomes = [results(p) for p in procs]
    counts, addresses = effects(server, shared["schema"])
    assert counts == {key: 1 for key in keys}
    assert addresses == set(hosts.addresses)  # both hosts ran effects
    per_key = Counter((key, status) for o in outcomes for key, status in o["statuses"].items())
    for key in keys:
        assert per_key[(str(key), "executed")] == 1, key
        assert per_key[(str(key), "cached")] == 3, key
    with Runtime(shared["url"].replace(hosts.server_address, "127.0.0.1")) as rt:
        report = verify_log(rt)
        assert report.ok, report.broken


def test_when_one_hosts_workers_are_killed_mid_burst_the_other_host_takes_over(
    hosts: Hosts, server: LocalServer, shared: dict[str, Any]
) -> None:
    """Host 0's two workers each run two effects, then hang inside their third call (one
    after its effect, one before it) and are killed, while host 1's workers, calling the
    same keys from the other end, go on. Host 1 waits out the one-second leases of the
    dead claims, then reconcile finds the one effect that happened and the other runs."""
    keys = list(range(16))
    lease = 1.0
    low, high = keys[:8], keys[8:]
    dying = []
    for i in range(2):
        order = low[i::2] + high[i::2]
        job = {**shared, "name": f"dying{i}", "keys": order, "lease": lease, "wait": 30}
        dying.append(hosts.spawn(0, {**job, "hang_after": 2, "effect_before_hang": i == 0}))
    living = []
    for i in range(2):
        order = high[i::2][::-1] + low[i::2][::-1]
        job = {**shared, "name": f"living{i}", "keys": order, "lease": lease, "wait": 30}
        living.append(hosts.spawn(1, {**job, "sleep": 0.1}))
    release(shared["go"], shared["marks"], [f"{w}{i}" for w in ("dying", "living") for i in (0, 1)])
    marks = [Path(shared["marks"], f"dying{i}") for i in range(2)]
    deadline = time.monotonic() + 30
    while not all(m.exists() for m in marks) and time.monotonic() < deadline:
        time.sleep(0.01)
    hung = [int(m.read_text()) for m in marks]  # each worker's claim, held as it dies
    for p in dying:
        p.send_signal(signal.SIGKILL)
    for p in dying:
        assert p.wait(10) == -signal.SIGKILL
    outcomes = [results(p) for p in living]
    counts, _ = effects(server, shared["schema"])
    assert counts == {key: 1 for key in keys}  # every effect once, none twice
    statuses = [{o["statuses"].get(str(k)) for o in outcomes} for k in hung]
    assert "cached" in statuses[0]  # its effect had happened: reconciled, not run again
    assert "executed" in statuses[1]  # killed before its effect: run by the other host
    with Runtime(shared["url"].replace(hosts.server_address, "127.0.0.1")) as rt:
        taken_over = {e.idempotency_key for e in rt.events(status="started") if e.attempt == 2}
        assert len(taken_over) == 2
        assert all(c.state == "done" for c in rt.store.claims())  # type: ignore[attr-defined]
        report = verify_log(rt)
        assert report.ok, report.broken
