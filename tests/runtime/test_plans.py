"""Dry-run plans: everything but the effect, and commits that run exactly the planned call
once or refuse as stale. On every store, sync and async."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dar
from dar import (
    ConfigurationError,
    Deny,
    Effect,
    NeedsApproval,
    Plan,
    Runtime,
    Status,
    Tool,
    rule,
    tool,
)
from dar.errors import ModeError
from tests.conftest import Clock
from tests.support.trip import trip_tools

MakeRuntime = Callable[..., Runtime]
ran: Counter[str] = Counter()


def quote(order_id: str, zone: str) -> dict[str, Any]:
    return {"courier": "shalom", "fee_cents": 1200 if zone == "puno" else 2500}


@tool(effect=Effect.MUTATE_EXTERNAL, simulate=quote)
def book_courier(order_id: str, zone: str) -> dict[str, Any]:
    ran["book_courier"] += 1
    return {"booked": order_id}


@tool(effect=Effect.MUTATE_LOCAL)
def note(text: str) -> str:
    ran["note"] += 1
    return text


@tool(effect=Effect.READ)
def stock(sku: str) -> int:
    ran["stock"] += 1
    return 3


@tool(
    effect=Effect.IRREVERSIBLE, approval=True, simulate=lambda order_id, amount: {"charge": amount}
)
def charge(order_id: str, amount: int) -> dict[str, Any]:
    ran["charge"] += 1
    return {"charged": amount}


@rule(applies_to="book_courier")
def covered(inp: dict[str, Any], ctx: Any) -> Any:
    return Deny(f"no courier for {inp['zone']}") if inp["zone"] == "yunguyo" else True


TOOLS: list[Tool[Any]] = [book_courier, note, stock, charge]
BOOK = {"order_id": "ORD-1", "zone": "puno"}


@pytest.fixture(autouse=True)
def _reset() -> None:
    ran.clear()


@pytest.fixture
def rt(make_runtime: MakeRuntime, clock: Clock) -> Runtime:
    return make_runtime(tools=TOOLS, rules=[covered], clock=clock)


def test_plan_runs_everything_but_the_effect(rt: Runtime) -> None:
    plan = rt.plan("book_courier", BOOK, correlation_id="s1")
    assert isinstance(plan, Plan)
    assert plan.verdict == "execute" and plan.preview == {"courier": "shalom", "fee_cents": 1200}
    assert ran["book_courier"] == 0
    [row] = rt.events(correlation_id="s1")
    assert row.status == "planned" and row.output == plan.preview
    assert rt.plan("note", {"text": "x"}).preview is None  # no simulate: still a plan
    refused = rt.plan("book_courier", {"order_id": "ORD-2", "zone": "yunguyo"})
    assert refused.verdict == "be refused"
    assert refused.reasons == ("covered: no courier for yunguyo",)
    assert rt.plan("charge", {"order_id": "A", "amount": 5}).verdict == "need a person's approval"
    bad = rt.plan("book_courier", {"order_id": 1})
    assert bad.verdict == "be refused" and "$.order_id" in bad.reasons[0]
    assert ran["book_courier"] == 0


def test_commit_runs_exactly_the_planned_call_once(rt: Runtime) -> None:
    plan = rt.plan("book_courier", '{"zone": "puno", "order_id": "ORD-1"}')
    done = rt.commit(plan)
    assert done.status == Status.EXECUTED and ran["book_courier"] == 1
    assert done.input_hash == plan.input_hash
    again = rt.commit(plan)  # the key moved: a plan is used once
    assert again.status == Status.STALE and "moved from free" in (again.reason or "")
    assert "stale" in again.for_model().text and again.for_model().is_error
    after = rt.plan("book_courier", BOOK)
    assert after.verdict == "answer from the record"
    assert ran["book_courier"] == 1


def test_stale_when_rules_change(rt: Runtime) -> None:
    plan = rt.plan("book_courier", BOOK)
    rt.add_rule(rule(applies_to="book_courier", name="weekdays")(lambda i, c: True))
    res = rt.commit(plan)
    assert res.status == Status.STALE and "rules in force changed" in (res.reason or "")
    assert ran["book_courier"] == 0
    assert rt.events(status="stale")


def test_stale_when_the_key_moved(rt: Runtime) -> None:
    plan = rt.plan("book_courier", BOOK)
    rt.call("book_courier", BOOK)  # someone ran it meanwhile
    assert rt.commit(plan).status == Status.STALE
    assert ran["book_courier"] == 1


def test_stale_when_expired(rt: Runtime, clock: Clock) -> None:
    plan = rt.plan("book_courier", BOOK, ttl=30)
    clock.advance(31)
    res = rt.commit(plan)
    assert res.status == Status.STALE and "expired" in (res.reason or "")
    assert ran["book_courier"] == 0


def test_a_person_approves_the_preview_they_saw(rt: Runtime) -> None:
    plan = rt.plan("charge", {"order_id": "A", "amount": 120}, correlation_id="s2")
    assert plan.preview == {"charge": 120}
    rt.approve(plan, by="alice")
    assert rt.commit(plan).status == Status.EXECUTED and ran["charge"] == 1


def test_plan_travels_as_json(rt: Runtime) -> None:
    plan = rt.plan("book_courier", BOOK)
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert rt.commit(again).status == Status.EXECUTED


def test_dry_run_runtime(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(tools=TOOLS, rules=[covered], dry_run=True)
    assert rt.call("stock", {"sku": "A"}, correlation_id="s3").output == 3  # reads run
    res = rt.call("book_courier", BOOK, correlation_id="s3")
    assert res.status == Status.PLANNED and res.output["fee_cents"] == 1200
    assert not res.for_model().is_error and "Dry run" in res.for_model().text
    rt.call("note", {"text": "hi"}, correlation_id="s3")
    assert ran["book_courier"] == ran["note"] == 0 and ran["stock"] == 1
    reviewed = rt.plans("s3")
    assert [p.tool for p in reviewed] == ["book_courier", "note"]
    rehearsed = rt.commit_all("s3")  # a dry run commits nothing: the rehearsal goes on
    assert [r.status for r in rehearsed] == [Status.PLANNED, Status.PLANNED]
    assert ran["book_courier"] == ran["note"] == 0
    live = make_runtime(tools=TOOLS, rules=[covered], store=rt.store)
    results = live.commit_all(reviewed)
    assert [r.status for r in results] == [Status.EXECUTED, Status.EXECUTED]
    assert ran["book_courier"] == ran["note"] == 1 and rt.plans("s3") == []


spy_args = st.fixed_dictionaries(
    {"order_id": st.text(max_size=5) | st.integers(), "zone": st.sampled_from(["puno", "yunguyo"])}
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=spy_args)
def test_a_dry_run_never_calls_the_handler(args: dict[str, Any]) -> None:
    with Runtime("sqlite://:memory:", tools=TOOLS, rules=[covered], dry_run=True) as rt:
        rt.call("book_courier", args)
        rt.plan("book_courier", args)
        rt.call("charge", {"order_id": "x", "amount": 1})
    assert ran["book_courier"] == 0 and ran["charge"] == 0


def test_needs_approval_is_exported() -> None:
    assert dar.NeedsApproval is NeedsApproval


runs: Counter[str] = Counter()


@tool(effect=Effect.IRREVERSIBLE, approval=True, lease=60)
def wire(amount: int) -> int:
    runs["wire"] += 1
    return amount


@pytest.fixture(autouse=True)
def _reset_runs() -> None:
    runs.clear()


def test_a_preview_with_no_json_form_is_reported_not_raised() -> None:
    @tool(effect=Effect.MUTATE_LOCAL, simulate=lambda n: {"total": float("nan")})
    def total(n: int) -> int:
        return n

    with Runtime("sqlite://:memory:", tools=[total], dry_run=True) as rt:
        res = rt.call("total", {"n": 1})
        assert res.status == Status.PLANNED
        assert "no JSON form" in res.output["simulate failed"]


def test_an_edited_plan_is_refused() -> None:
    guard = rule(applies_to="wire", name="guard")(lambda i, c: True)

    @tool(effect=Effect.MUTATE_LOCAL)
    def pay(amount: int) -> int:
        runs["pay"] += 1
        return amount

    with Runtime("sqlite://:memory:", tools=[pay, wire], rules=[guard]) as rt:
        made = rt.plan("pay", {"amount": 5})
        forged = dataclasses.replace(made, arguments='{"amount":5000}')
        assert rt.commit(forged).status == Status.STALE and runs["pay"] == 0
        wired = rt.plan("wire", {"amount": 5})
        with pytest.raises(ConfigurationError, match="do not match"):
            rt.approve(Plan.from_json(wired.to_json().replace("5}", "5000}")), by="alice")


def test_a_dry_run_saga_is_a_group_of_plans_and_leaves_the_real_saga_free(
    make_runtime: Callable[..., Runtime],
) -> None:
    # A dry-run saga once wrote its rows and a compensated record, so the real one was
    # refused ("exists and is compensated") and only its first step could be planned.
    runs: list[tuple[str, str]] = []
    dry = make_runtime(tools=trip_tools(runs), dry_run=True)
    with dry.saga("trip-8", correlation_id="s2") as saga:
        first = saga.call("book_car", {"car": "c2"})
        second = saga.call("refund", {"order": "C", "amount": 3})
    assert (str(first.status), str(second.status), saga.result) == ("planned", "planned", "planned")
    assert runs == [] and dry.sagas() == []
    assert {e.status for e in dry.events(correlation_id="s2")} == {"planned"}
    live = make_runtime(tools=trip_tools(runs))
    with live.saga("trip-8", correlation_id="s2") as saga:
        saga.call("book_car", {"car": "c2"})
    assert saga.result == "completed" and runs == [("book_car", "c2")]


def test_a_dry_run_commits_approves_and_recovers_nothing(
    make_runtime: Callable[..., Runtime],
) -> None:
    runs: list[tuple[str, str]] = []
    dry = make_runtime(tools=trip_tools(runs), dry_run=True)
    plan = dry.plan("refund", {"order": "D", "amount": 2})
    assert str(dry.commit(plan).status) == "planned"
    with pytest.raises(ModeError, match="dry run"):
        dry.approve(plan, by="alice")
    assert dry.recover_sagas() == [] and runs == []
    assert {e.status for e in dry.events()} == {"planned"}
