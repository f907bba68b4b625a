"""Exactly once under real concurrency: threads and spawned processes on one database,
and workers killed with SIGKILL inside a handler."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dar import Effect, Runtime, Status, rule, tool
from dar.cli.main import main
from tests.conftest import fresh_schema
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
    # Each thread's own runtime is opened before the race: the race is on the key, and a
    # thread that failed to open would leave the others at the barrier.
    runtimes = [shared or make_kind(runtime_kind, url, wait=30) for _ in range(n_threads)]
    results: list[Any] = []

    def worker(rt: Any) -> None:
        barrier.wait(timeout=60)
        results.append(rt.execute(workers.slow_effect, {"n": 1, "marks": "t", "sleep": 0.2}))

    threads = [threading.Thread(target=worker, args=(rt,)) for rt in runtimes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if shared is None:
        for rt in runtimes:
            rt.close()
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
    assert proc.pid is not None  # started
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


@tool(effect=Effect.MUTATE_LOCAL)
def note(n: int) -> int:
    return n


def calls(rt: Runtime, who: str, base: int) -> None:
    for n in range(base, base + 3):
        assert rt.execute(note, {"n": n}, correlation_id=who).status == Status.EXECUTED
        assert rt.execute(note, {"n": n}, correlation_id=who).status == Status.CACHED
    rt.close()


def test_forking_after_opening_a_runtime_is_safe_in_both_processes(
    tmp_path: Path,
) -> None:
    """Found by the airtight review: after `fork()`, the parent's buffered rows collide (`UNIQUE
    constraint failed: agent_tool_events.event_id` on SQLite)."""
    db = tmp_path / "fork.db"
    rt = Runtime(f"sqlite:///{db}?hit_flush=60")  # hit rows stay buffered until a write
    rt.execute(note, {"n": 0}, correlation_id="pre")
    for _ in range(3):
        assert rt.execute(note, {"n": 0}, correlation_id="pre").status == Status.CACHED
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running any of pytest's teardown
        try:
            os.close(read)
            calls(rt, "child", 100)
            message = b"ok"
        except BaseException as exc:
            message = repr(exc).encode()[:4000]
        os.write(write, message)
        os._exit(0)
    os.close(write)
    parent_error = None
    try:
        calls(rt, "parent", 200)
    except Exception as exc:
        parent_error = exc
    deadline = time.monotonic() + 60
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.02)
    child = os.read(read, 4096).decode()
    os.close(read)
    assert parent_error is None, f"parent: {parent_error!r}"
    assert child == "ok", f"child: {child}"
    with Runtime(f"sqlite:///{db}") as check:
        for who in ("child", "parent"):
            got = Counter(e.status for e in check.events(correlation_id=who))
            assert got == {"started": 3, "executed": 3, "cached": 3}, (who, got)
        pre = Counter(e.status for e in check.events(correlation_id="pre"))
        assert pre == {"started": 1, "executed": 1, "cached": 3}, pre
    assert main(["verify", "--db", f"sqlite:///{db}"]) == 0


def deadlocks(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def test_one_runtime_shared_by_16_threads(pg_base_url: str) -> None:
    """Found by the airtight review: Postgres, one `Runtime` shared by 16 threads (failed in every
    run): wrong outputs, raw errors, keys left `running`, `deadlock detected`."""
    schema = fresh_schema()
    before = deadlocks(pg_base_url)
    ran: Counter[int] = Counter()
    lock = threading.Lock()

    @tool(effect=Effect.MUTATE_LOCAL, key=lambda i: f"sq:{i['n']}")
    def square(n: int) -> dict[str, int]:
        with lock:
            ran[n] += 1
        return {"n": n, "sq": n * n}

    rt = Runtime(f"{pg_base_url}?schema={schema}", wait=60)
    errors: list[str] = []
    results: list[tuple[int, Status, Any]] = []
    stop = time.monotonic() + 7.0

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        while time.monotonic() < stop:
            n = rnd.randrange(300)  # fresh at first, mostly repeats later
            corr = f"c{rnd.randrange(4)}"
            try:
                res = rt.execute(square, {"n": n}, correlation_id=corr)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            results.append((n, res.status, res.output))

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    rt.close()
    assert errors == [], f"{len(errors)} errors, first: {errors[:3]}"
    wrong = [r for r in results if r[2] != {"n": r[0], "sq": r[0] * r[0]}]
    assert wrong == [], f"{len(wrong)} wrong answers, first: {wrong[:3]}"
    assert {s for _, s, _ in results} <= {Status.EXECUTED, Status.CACHED}
    executed = Counter(n for n, s, _ in results if s == Status.EXECUTED)
    assert set(executed.values()) == {1} and ran == executed, "an effect ran twice"
    with psycopg.connect(pg_base_url) as conn:
        running = conn.execute(
            f"SELECT count(*) FROM \"{schema}\".agent_tool_claims WHERE state = 'running'"
        ).fetchone()
    assert running == (0,), "keys left running with their effect done"
    time.sleep(1.5)  # backends report their statistics at most once a second
    assert deadlocks(pg_base_url) == before, "deadlock detected on the chain heads"
