"""`rt.speculate`: a search over candidate calls runs reads for real (once each), plans
every other effect, never runs an effect's handler, and `commit_all(search.best)` runs
exactly the chosen path once."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dar import AsyncRuntime, Effect, Runtime, Status, agent, tool
from dar.core.states import EventKind
from dar.errors import ModeError
from dar.speculate import Branch, Candidate
from tests.support.calls import MakeRuntime
from tests.support.couriers import World, greedy, propose, score


def test_the_search_finds_the_path_the_greedy_choice_misses(make_runtime: MakeRuntime) -> None:
    world = World()
    rt = make_runtime(tools=world.tools(), rules=world.rules())
    found = rt.speculate("conv-1", propose=propose, score=score, budget=16, depth=3)
    assert [p.tool for p in found.best] == ["book_courier", "notify_customer"]
    assert found.best[0].preview == {"courier": "andes", "cents": 1500, "fee_cents": 0}
    assert found.score == pytest.approx(0.5)
    assert greedy(World()) == 0.0
    assert world.effects == 0 and world.ran["quote_couriers"] == 1
    refused = [n for n in found.tree if n.status == "rejected"]
    assert len(refused) == 1 and "cheapo does not cover puno" in refused[0].shown
    assert "book_courier" in found.why
    results = rt.commit_all(found.best)
    assert [r.status for r in results] == [Status.EXECUTED, Status.EXECUTED]
    assert world.ran["book_courier"] == 1 and world.ran["notify_customer"] == 1


def test_a_seed_makes_the_search_repeatable() -> None:
    def shape(seed: int) -> list[tuple[Any, int, float]]:
        with World().runtime() as rt:
            found = rt.speculate("c", propose=propose, score=score, budget=4, depth=3, seed=seed)
            return [(n.candidate, n.visits, n.mean) for n in found.tree]

    assert shape(3) == shape(3)
    assert {repr(shape(s)) for s in range(6)} != {repr(shape(3))}  # the seed matters


def test_the_search_is_one_group_in_the_log() -> None:
    world = World()
    with world.runtime() as rt:
        found = rt.speculate("conv-2", propose=propose, score=score, budget=8)
        searched = rt.events(correlation_id="conv-2")
        rt.commit_all(found.best)
        events = rt.events(correlation_id="conv-2")
    reads = [e for e in searched if e.effect == "read"]
    assert [(e.tool_name, e.parent_event_id) for e in reads] == [
        ("quote_couriers", found.search_id)
    ]
    searches = [e for e in events if e.status == EventKind.SPECULATED.value]
    assert len(searches) == 2 and searches[0].event_id == found.search_id
    assert [p["plan_id"] for p in searches[-1].output["best"]] == [p.plan_id for p in found.best]
    assert len(searches[-1].output["tree"]) == len(found.tree)
    nested = [e for e in events if e.parent_event_id == found.search_id]
    assert {e.status for e in nested} == {"executed", "planned", "started"}  # and the commits
    assert any("would be refused" in (e.rejection_reason or "") for e in nested)


def test_a_changed_read_makes_the_plans_stale() -> None:
    world = World()
    with world.runtime() as rt:
        found = rt.speculate("conv-3", propose=propose, score=score, budget=16)
        world.prices["andes"] = 2500  # the world moved before the commit
        results = rt.commit_all(found.best)
    assert [r.status for r in results] == [Status.STALE, Status.STALE]
    assert "the read quote_couriers" in (results[0].reason or "")
    assert "the call before it on the path" in (results[1].reason or "")
    assert world.effects == 0


def test_a_path_commits_in_its_order_on_the_world_before_its_first_effect() -> None:
    world = World()
    with world.runtime() as rt:
        found = rt.speculate("conv-o", propose=propose, score=score, budget=16)
        book, notify = found.best
        early = rt.commit(notify)
        assert early.status is Status.STALE and "before it on the path" in (early.reason or "")
        assert rt.commit(book).status is Status.EXECUTED
        world.prices["andes"] = 2500  # moved by the booking itself, say: not a reason to stop
        assert rt.commit(notify).status is Status.EXECUTED
    assert world.ran["book_courier"] == world.ran["notify_customer"] == 1


def _commit_in_process(url: str, best: list[str], done: Any, ready: Any, go: Any) -> None:
    from dar.core.dryrun import Plan

    world = World()
    with world.runtime(url) as rt:
        ready.set()
        go.wait(60)
        statuses = [r.status.value for r in rt.commit_all([Plan.from_json(p) for p in best])]
    done.put((statuses, world.effects))


def test_two_processes_commit_the_same_search_once(shared_url: str) -> None:
    world = World()
    with world.runtime(shared_url) as rt:
        found = rt.speculate("conv-4", propose=propose, score=score, budget=16)
    best = [p.to_json() for p in found.best]
    ctx = multiprocessing.get_context("spawn")
    done, ready, go = ctx.Queue(), ctx.Event(), ctx.Event()
    other = ctx.Process(target=_commit_in_process, args=(shared_url, best, done, ready, go))
    other.start()
    assert ready.wait(60)
    # this process commits it at the same time (the other waits for `go`, set here)
    _commit_in_process(shared_url, best, done, go, go)
    answers = [done.get(timeout=60) for _ in "ab"]
    other.join(timeout=30)
    assert sum(effects for _, effects in answers) == 2  # one booking, one notice, in all
    assert sorted(s for statuses, _ in answers for s in statuses).count("executed") == 2


def test_nothing_but_reads_runs_in_a_search_whatever_propose_does() -> None:
    world = World()
    with world.runtime() as rt:

        def sneaky(branch: Branch) -> list[Candidate]:
            with pytest.raises(ModeError):
                rt.call("book_courier", {"order_id": "X", "courier": "andes", "zone": "puno"})
            return propose(branch)

        rt.speculate("conv-5", propose=sneaky, score=score, budget=8)
    assert world.effects == 0


def test_a_failing_score_ends_the_search_with_no_effect() -> None:
    world = World()
    with world.runtime() as rt, pytest.raises(ValueError, match="from 0 to 1"):
        rt.speculate("conv-6", propose=propose, score=lambda b: 2.0, budget=8)
    assert world.effects == 0


def test_an_async_search_cancelled_runs_no_effect() -> None:
    world = World()

    async def main() -> None:
        async def slow_score(branch: Branch) -> float:
            await asyncio.sleep(0.01)
            return score(branch)

        async with AsyncRuntime(
            "sqlite://:memory:", tools=world.tools(), rules=world.rules()
        ) as rt:
            task = asyncio.ensure_future(
                rt.speculate("conv-7", propose=propose, score=slow_score, budget=64)
            )
            await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            found = await rt.speculate("conv-8", propose=propose, score=slow_score, budget=16)
            assert [p.tool for p in found.best] == ["book_courier", "notify_customer"]

    asyncio.run(main())
    assert world.effects == 0


worlds = st.fixed_dictionaries(
    {
        "prices": st.dictionaries(
            st.sampled_from(["a", "b", "c", "d"]), st.integers(100, 2900), min_size=1
        ),
        "fees": st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 900)),
        "uncovered": st.sets(st.sampled_from(["a", "b", "c", "d"])),
        "budget": st.integers(1, 12),
        "depth": st.integers(1, 3),
        "seed": st.integers(0, 3),
    }
)


SOAK = os.environ.get("HYPOTHESIS_PROFILE") == "soak"


@settings(max_examples=3000 if SOAK else 40)
@given(worlds, st.booleans())
def test_no_effect_runs_in_a_search_and_the_commit_runs_the_chosen_path_once(
    case: dict[str, Any], in_async: bool
) -> None:
    world = World(prices=case["prices"], fees=case["fees"], uncovered=case["uncovered"])
    options = {k: case[k] for k in ("budget", "depth", "seed")}
    if in_async:
        found, results = asyncio.run(_search_and_commit_async(world, options))
    else:
        with world.runtime() as rt:
            found = rt.speculate("w", propose=propose, score=score, **options)
            assert world.effects == 0
            assert world.ran["quote_couriers"] == 1  # one distinct read: once, in any budget
            results = rt.commit_all(found.best)
    chosen = [p.tool for p in found.best]
    assert all(r.status is Status.EXECUTED for r in results)
    assert world.ran["book_courier"] == chosen.count("book_courier")
    assert world.ran["notify_customer"] == chosen.count("notify_customer")


async def _search_and_commit_async(world: World, options: dict[str, Any]) -> tuple[Any, Any]:
    async with AsyncRuntime("sqlite://:memory:", tools=world.tools(), rules=world.rules()) as rt:
        found = await rt.speculate("w", propose=propose, score=score, **options)
        assert world.effects == 0
        assert world.ran["quote_couriers"] == 1
        return found, await rt.commit_all(found.best)


@agent
def dispatcher(order: str) -> list[str]:
    found = _RUN_RT[0].speculate("run-1", propose=propose, score=score, budget=8)
    _RUN_SEARCHES.append(found.search_id)
    if len(_RUN_SEARCHES) == 1:
        raise KeyboardInterrupt  # the worker dies after the search was journaled
    return [p.plan_id for p in found.best]


_RUN_RT: list[Any] = []
_RUN_SEARCHES: list[str] = []


def test_a_resumed_run_does_not_search_again(file_url: str) -> None:
    world = World()
    rt = world.runtime(file_url)
    _RUN_RT[:] = [rt]
    _RUN_SEARCHES.clear()
    try:
        with pytest.raises(KeyboardInterrupt):
            rt.start(dispatcher, "run-1", "ORD-7", lease=1e-6)
        reads = world.ran["quote_couriers"]
        [resumed] = rt.resume(lease=30.0)
    finally:
        rt.close()
    assert resumed.status == "finished"
    assert _RUN_SEARCHES[0] == _RUN_SEARCHES[1]  # the journaled search, not a new one
    assert world.ran["quote_couriers"] == reads == 1
    assert len(resumed.output) == 2


@tool(effect=Effect.MUTATE_EXTERNAL)
def bare(x: int) -> int:
    return x


def test_an_effect_without_simulate_has_a_preview_that_says_so() -> None:
    with Runtime("sqlite://:memory:", tools=[bare]) as rt:
        found = rt.speculate(
            "conv-9", propose=lambda b: [] if b.path else [Candidate("bare", {"x": 1})],
            score=lambda b: 0.5, budget=2, depth=1,
        )  # fmt: skip
    [plan] = found.best
    assert plan.preview is None and plan.verdict == "execute"
    assert "has no simulate=" in found.path[0].result.output["no preview"]


def test_a_search_keeps_no_personal_field_of_a_tool_that_redacts(file_url: str) -> None:
    phone = "+51 999 123 456"

    @tool(effect=Effect.MUTATE_EXTERNAL, redact=["phone"], simulate=lambda phone: {"to": phone})
    def text_customer(phone: str) -> str:
        return "sent"

    first = Candidate("text_customer", {"phone": phone})
    with Runtime(file_url, tools=[text_customer]) as rt:
        found = rt.speculate(
            "conv-p", propose=lambda b: [] if b.path else [first], score=lambda b: 1.0,
            budget=1, depth=1,
        )  # fmt: skip
        events = rt.events(correlation_id="conv-p")
    assert found.best[0].arguments  # the live plan can be committed
    assert phone not in repr([(e.input, e.output, e.rejection_reason) for e in events])
    assert phone not in repr([n.shown for n in found.tree])  # shown as the log shows it


def test_a_replay_answers_with_the_recorded_search_and_its_commits(file_url: str) -> None:
    world = World()
    with world.runtime(file_url) as rt:
        live = rt.speculate("conv-r", propose=propose, score=score, budget=16)
        committed = rt.commit_all(live.best)
    reads = world.ran["quote_couriers"]

    def never(branch: Branch) -> list[Candidate]:
        raise AssertionError("a replay does not search")

    with world.runtime(file_url, replay="conv-r") as replay:
        again = replay.speculate("conv-r", propose=never, score=score, budget=16)
        assert [p.plan_id for p in again.best] == [p.plan_id for p in live.best]
        assert [n.visits for n in again.tree] == [n.visits for n in live.tree]
        replayed = replay.commit_all(again.best)
    assert [r.output for r in replayed] == [r.output for r in committed]
    assert world.ran["quote_couriers"] == reads and world.effects == 2  # nothing ran again
