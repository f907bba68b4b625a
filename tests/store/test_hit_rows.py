"""Cache-hit rows: buffered, written with the next write or at close, and at a normal
interpreter exit even when the runtime was never closed; a crash can lose only them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from dar import (
    Effect,
    Runtime,
    Status,
    tool,
)
from dar.store.sqlite import SQLiteStore
from tests.conftest import fresh_schema
from tests.support.coverage import STATS
from tests.support.runtimes import make as make_kind


def test_buffered_cached_rows_are_flushed_at_a_normal_exit(tmp_path: Any) -> None:
    """Found by the airtight review: buffered `cached` rows are lost at a normal interpreter exit
    when the runtime is not closed (3 calls left 2 rows)."""
    import subprocess
    import sys

    db = tmp_path / "exit.db"
    script = f"""
from dar import Effect, Runtime, tool
@tool(effect=Effect.MUTATE_LOCAL)
def note(n: int) -> int:
    return n
rt = Runtime({f"sqlite:///{db}"!r})
print([rt.execute(note, {{"n": 1}}).status.value for _ in range(3)])
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['executed', 'cached', 'cached']"
    with Runtime(f"sqlite:///{db}") as rt:
        assert Counter(e.status for e in rt.events()) == {"started": 1, "executed": 1, "cached": 2}


EXIT_SCRIPT = """
import sys
from dar import Effect, Runtime, tool

@tool(effect=Effect.MUTATE_LOCAL)
def t(n: int) -> int:
    return n

rt = Runtime(sys.argv[1])  # never closed
for _ in range(3):
    rt.execute(t, {"n": 1}, correlation_id="exit")
"""


def test_an_unclosed_postgres_runtime_writes_its_hit_rows_at_exit(
    pg_base_url: str,
) -> None:
    """Found by the airtight review: buffered `cached` rows are lost at a normal interpreter exit
    when the runtime is not closed — on Postgres too."""
    url = f"{pg_base_url}?schema={fresh_schema()}"
    done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, url], timeout=60)
    assert done.returncode == 0
    with Runtime(url) as rt:
        got = sorted(e.status for e in rt.events(correlation_id="exit"))
    assert got == ["cached", "cached", "executed", "started"]


def test_what_a_crash_can_lose_is_only_buffered_hit_rows(tmp_path: Path, marks: Path) -> None:
    """Cache-hit rows are buffered (see SQLiteStore's hit_flush); claims, outcomes and
    refusals are durable before execute returns. Kill a process right after 20 hits: the
    hits' rows are gone, the execution and its outcome are not."""
    import multiprocessing as mp
    import signal

    from tests.support import workers

    url = f"sqlite:///{tmp_path / 'crash.db'}"
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=workers.hits_then_die, args=(url, ready))
    proc.start()
    assert ready.wait(60)
    assert proc.pid is not None  # started
    os.kill(proc.pid, signal.SIGKILL)
    STATS["faults: SIGKILL after buffered hits"] += 1
    proc.join()
    with Runtime(url) as rt:
        statuses = Counter(e.status for e in rt.events())
        assert statuses == {"started": 1, "executed": 1}  # the 20 "cached" rows were lost
        res = rt.execute(workers.slow_effect, {"n": 7, "marks": "hits", "sleep": 0})
        assert res.status == Status.CACHED  # the recorded outcome survived
    assert (marks / "hits").read_text().count("\n") == 1  # and it ran once


def test_hit_rows_become_durable_with_the_next_write(tmp_path: Path, runtime_kind: str) -> None:
    path = tmp_path / "flush.db"

    @tool(effect=Effect.MUTATE_LOCAL)
    def note(n: int) -> int:
        return n

    store = SQLiteStore(path, hit_flush=60.0)
    rt = make_kind(runtime_kind, store)
    rt.execute(note, {"n": 1})
    rt.execute(note, {"n": 1})  # a hit: buffered
    other = sqlite3.connect(path)
    count = "SELECT status FROM agent_tool_events ORDER BY seq"
    assert [r[0] for r in other.execute(count)] == ["started", "executed"]
    rt.execute(note, {"n": 2})  # the next write carries the hit row along, in order
    assert [r[0] for r in other.execute(count)] == [
        "started",
        "executed",
        "cached",
        "started",
        "executed",
    ]
    rt.execute(note, {"n": 2})
    rt.close()  # close flushes
    assert [r[0] for r in other.execute(count)][-1] == "cached"
    durable = SQLiteStore(tmp_path / "durable.db", hit_flush=0)
    rt = make_kind(runtime_kind, durable)
    rt.execute(note, {"n": 1})
    rt.execute(note, {"n": 1})
    assert [r[0] for r in sqlite3.connect(tmp_path / "durable.db").execute(count)] == [
        "started",
        "executed",
        "cached",
    ]  # hit_flush=0: written before returning
