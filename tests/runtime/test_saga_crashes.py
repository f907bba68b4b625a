"""Sagas against crashes at every event boundary: a worker dies at its n-th write (before
the write, or after it and before it saw the answer, as a SIGKILL would leave it), another
worker recovers. Against a model of the outside world: every completed forward step is
undone exactly once or the saga completed, nothing is undone that did not happen, no step
runs twice, and nothing runs forward after the crash."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dar import Effect, Reconciled, Runtime, tool
from dar.core.saga import COMPENSATED, COMPLETED, UNFINISHED, SagaAborted
from dar.store import open_store
from tests.conftest import Clock

WRITES = {"take", "take_or_lookup", "finish", "mark", "resolve", "append", "save_saga"}
acted: Counter[int] = Counter()
undone: Counter[int] = Counter()
crash_points: dict[str, Counter[str]] = {"sqlite": Counter(), "postgres": Counter()}


class Died(BaseException):
    """The worker's process is gone."""


class DyingStore:
    """A real store whose n-th write kills the worker, before or after the write."""

    def __init__(self, inner: Any, at: int, after: bool, seen: Counter[str]) -> None:
        self.inner, self.at, self.after, self.seen, self.writes = inner, at, after, seen, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in WRITES:
            return attr

        def write(op: Any) -> Any:
            self.writes += 1
            if self.writes != self.at:
                return attr(op)
            self.seen[f"{name}({what(op)}) {'after' if self.after else 'before'}"] += 1
            if self.after:
                attr(op)
            raise Died

        return write


def what(op: Any) -> str:
    """Where in the saga a write is: the saga state it records, or the tool it runs."""
    if hasattr(op, "saga"):
        return str(op.saga.state)
    event = getattr(op, "event", None) or getattr(getattr(op, "take", None), "started", None)
    return "" if event is None else str(event.tool_name)


@tool(
    effect=Effect.MUTATE_EXTERNAL,
    reconcile=lambda inp: Reconciled(executed=undone[inp["i"]] > 0, output="undone"),
    lease=60,
)
def undo(i: int) -> str:
    undone[i] += 1
    return "undone"


@tool(
    effect=Effect.MUTATE_EXTERNAL,
    compensate=undo,
    compensate_input=lambda inp, out: {"i": inp["i"]},
    reconcile=lambda inp: Reconciled(executed=acted[inp["i"]] > 0, output={"i": inp["i"]}),
    lease=60,
)
def act(i: int, fail: bool) -> dict[str, int]:
    if fail:
        raise RuntimeError(f"step {i} failed")
    acted[i] += 1
    return {"i": i}


plans = st.lists(st.booleans(), min_size=1, max_size=5)  # True: that step fails


def run_once(url: str, store_kind: str, fails: list[bool], at: int, after: bool) -> None:
    acted.clear()
    undone.clear()
    clock = Clock()
    inner = open_store(url)
    worker = Runtime(
        DyingStore(inner, at, after, crash_points[store_kind]),
        tools=[act], clock=clock, owner="w1", wait=0,
    )  # fmt: skip
    died = False
    try:
        with worker.saga("s", correlation_id="c") as saga:
            for i, fail in enumerate(fails):
                saga.call("act", {"i": i, "fail": fail})
    except Died:
        died = True
    except SagaAborted:  # pragma: no cover - the block swallows it
        raise
    before = acted.copy()
    clock.advance(1000)  # every lease has run out
    other = Runtime(url, tools=[act], clock=clock, owner="w2", wait=0)
    try:
        for _ in range(3):
            other.recover_sagas(stuck=True)
        states = {r.saga_id: r.state for r in other.sagas()}
    finally:
        other.close()
        inner.close()
    state = states.get("s")
    steps = range(len(fails))
    assert acted == before, "nothing ran forward after the worker died"
    assert all(acted[i] <= 1 and undone[i] <= 1 for i in steps), (acted, undone)
    assert all(undone[i] <= acted[i] for i in steps), "undid what never happened"
    if state is None:
        assert died and not acted, "no saga row, so nothing may have run"
        return
    assert state not in UNFINISHED, (state, fails, at, after)
    if state == COMPLETED:
        assert not any(fails) and all(acted[i] == 1 for i in steps) and not undone
    else:
        assert state == COMPENSATED
        assert all(undone[i] == acted[i] for i in steps), (acted, undone)
    if not died:
        assert (state == COMPLETED) == (not any(fails))


def crash_settings() -> settings:
    soak = os.environ.get("HYPOTHESIS_PROFILE") == "soak"
    return settings(
        max_examples=1500 if soak else 250,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


#: A saga of n steps writes about 2 + 4n rows and states before compensating, and about
#: 4 more per step it undoes: crash points are drawn from that range.
def crash_at(fails: list[bool]) -> st.SearchStrategy[int]:
    return st.integers(1, 2 + 8 * len(fails))


@crash_settings()
@given(data=st.data(), fails=plans, after=st.booleans())
def test_crashes_anywhere_on_sqlite(data: st.DataObject, fails: list[bool], after: bool) -> None:
    url = f"sqlite:///{tempfile.mkdtemp()}/s.db"
    run_once(url, "sqlite", fails, data.draw(crash_at(fails)), after)


@pytest.fixture(scope="module")
def pg_for_crashes(pg_base_url: str) -> str:
    return pg_base_url


def test_crashes_anywhere_on_postgres(pg_for_crashes: str) -> None:
    @crash_settings()
    @given(data=st.data(), fails=plans, after=st.booleans())
    def run(data: st.DataObject, fails: list[bool], after: bool) -> None:
        url = f"{pg_for_crashes}?schema=sc_{uuid.uuid4().hex[:12]}"
        run_once(url, "postgres", fails, data.draw(crash_at(fails)), after)

    run()


def test_report_crash_points() -> None:
    """Print how often each crash point was hit (the closing note's table)."""
    for store, points in crash_points.items():
        total = sum(points.values())
        print(f"\n{store}: {total} crashes")
        for point, n in sorted(points.items()):
            print(f"  {point:28} {n}")
