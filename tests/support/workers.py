"""Tools and entry points for tests that run in spawned processes (importable by name)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from dar import Effect, Runtime, rule, tool

MARKS = Path(os.environ.get("DAR_TEST_MARKS", "/tmp/dar-test-marks"))


def _mark(name: str, text: str) -> None:
    """Record that a handler ran: one line per execution, appended atomically."""
    with open(MARKS / name, "a") as f:
        f.write(text + "\n")


@tool(effect=Effect.MUTATE_EXTERNAL, key=lambda i: f"slow:{i['n']}")
def slow_effect(n: int, marks: str, sleep: float) -> dict[str, Any]:
    _mark(marks, f"{os.getpid()}:{n}")
    time.sleep(sleep)
    return {"n": n, "pid": os.getpid()}


def hang_forever(marks: str, effect: str) -> None:
    """Body of a handler that signals it started, then never finishes (to be SIGKILLed)."""
    _mark(marks, "started")
    time.sleep(3600)


def make_hanging_tool(effect: str, lease: float) -> Any:
    @tool(name=f"hang_{effect}", effect=Effect(effect), lease=lease)
    def hang(marks: str, n: int) -> dict[str, Any]:
        hang_forever(marks, effect)
        return {}

    return hang


def race(url: str, marks: str, n: int, sleep: float, barrier: Any, out: Any) -> None:
    """One racing worker process: wait at the barrier, then call the same tool input."""
    rt = Runtime(url, wait=60)
    barrier.wait()
    res = rt.execute(slow_effect, {"n": n, "marks": marks, "sleep": sleep})
    out.put((res.status.value, res.output))
    rt.close()


def crash_inside(url: str, marks: str, effect: str, lease: float) -> None:
    """Start a call whose handler hangs; the parent kills this process."""
    allow = rule(applies_to="*", name="allow")(lambda i, c: True)
    rt = Runtime(url, rules=[allow])
    rt.execute(make_hanging_tool(effect, lease), {"marks": marks, "n": 1})


def hits_then_die(url: str, ready: Any) -> None:
    """Execute once, answer 20 cache hits (buffered for a minute), then get killed."""
    from dar.store.sqlite import SQLiteStore

    path = url.removeprefix("sqlite:///")
    rt = Runtime(SQLiteStore(path, hit_flush=60.0))
    rt.execute(slow_effect, {"n": 7, "marks": "hits", "sleep": 0})
    for _ in range(20):
        rt.execute(slow_effect, {"n": 7, "marks": "hits", "sleep": 0})
    ready.set()
    time.sleep(3600)
