"""Exactly once under real concurrency: threads and spawned processes on one database,
and workers killed with SIGKILL inside a handler."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dar import Effect, Runtime, Status, rule

from tests.support import workers
from tests.support.runtimes import make as make_kind

SPAWN = mp.get_context("spawn")


def executions(marks: Path, name: str) -> list[str]:
    path = marks / name
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("shared_runtime", [True, False], ids=["one-runtime", "runtime-each"])
def test_threads_racing_on_one_key(
    shared_url: str, marks: Path, shared_runtime: bool, runtime_kind: str
) -> None:
    url = shared_url
    n_threads = 8
    barrier = threading.Barrier(n_threads)
    shared = make_kind(runtime_kind, url, wait=30) if shared_runtime else None
    results: list[Any] = []

    def worker() -> None:
        rt = shared or make_kind(runtime_kind, url, wait=30)
        barrier.wait()
        results.append(rt.execute(workers.slow_effect, {"n": 1, "marks": "t", "sleep": 0.2}))
        if shared is None:
            rt.close()

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(executions(marks, "t")) == 1
    got = Counter(r.status for r in results)
    assert got == {Status.EXECUTED: 1, Status.CACHED: n_threads - 1}
    assert len({repr(r.output) for r in results}) == 1
    with shared or Runtime(url) as rt:
        log = Counter(e.status for e in rt.events())
    assert log == {"started": 1, "executed": 1, "cached": n_threads - 1}


def test_processes_racing_on_one_database(shared_url: str, marks: Path) -> None:
    url = shared_url
    n_procs, keys = 4, 3  # 12 spawned workers, 4 on each key
    barrier = SPAWN.Barrier(n_procs * keys)
    out = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=workers.race, args=(url, "p", n, 0.3, barrier, out))
        for n in range(keys)
        for _ in range(n_procs)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    runs = executions(marks, "p")
    assert sorted(int(line.split(":")[1]) for line in runs) == list(range(keys))
    assert Counter(s for s, _ in results) == {"executed": keys, "cached": keys * (n_procs - 1)}
    with Runtime(url) as rt:
        log = Counter(e.status for e in rt.events())
    assert log == {"started": keys, "executed": keys, "cached": keys * (n_procs - 1)}


def kill_inside_handler(url: str, marks: Path, effect: str, lease: float) -> None:
    proc = SPAWN.Process(target=workers.crash_inside, args=(url, "k", effect, lease))
    proc.start()
    deadline = time.monotonic() + 60
    while not executions(marks, "k"):
        assert time.monotonic() < deadline, "the handler never started"
        assert proc.is_alive(), "the worker died before its handler started"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert proc.exitcode == -signal.SIGKILL


@pytest.mark.parametrize("effect", [e.value for e in Effect if e is not Effect.READ])
def test_sigkill_inside_a_handler(
    shared_url: str, marks: Path, effect: str, runtime_kind: str
) -> None:
    url = shared_url
    lease = 60.0  # real seconds in the worker; this test moves its own clock past it
    kill_inside_handler(url, marks, effect, lease)
    t = workers.make_hanging_tool(effect, lease)
    allow = rule(applies_to="*", name="allow")(lambda i, c: True)
    skew = [0.0]
    rt = make_kind(runtime_kind, url, wait=0, rules=[allow], clock=lambda: time.time() + skew[0])
    # Within the lease the dead worker's claim still stands.
    assert rt.execute(t, {"marks": "k", "n": 1}).status == Status.IN_PROGRESS
    skew[0] = lease + 1  # the lease has run out
    if Effect(effect).blind_retry_safe:
        # Re-executed by the next caller: make the handler return this time.
        done = workers.make_hanging_tool(effect, lease)
        object.__setattr__(done, "handler", lambda marks, n: {"recovered": n})
        res = rt.execute(done, {"marks": "k", "n": 1})
        assert res.status == Status.EXECUTED and res.output == {"recovered": 1}
        assert rt.events(status="started")[-1].attempt == 2
    else:
        res = rt.execute(t, {"marks": "k", "n": 1})
        assert res.status == Status.INDETERMINATE
        assert len(executions(marks, "k")) == 1  # never run again blindly
    statuses = [e.status for e in rt.events()]
    rt.close()
    assert statuses[0] == "started"  # the dead worker's attempt is in the log
