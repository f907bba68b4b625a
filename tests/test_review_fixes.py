"""Regression tests for what a review of the approval, dry-run and saga work found."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from typing import Any

import pytest

from dar import ConfigurationError, Effect, Plan, Runtime, Status, rule, tool
from dar.core.decide import CallSpec, decide_call
from dar.core.grants import fingerprint
from dar.core.ops import UseGrant
from dar.rules import Rule

from tests.conftest import Clock

runs: Counter[str] = Counter()


@tool(effect=Effect.READ, approval=True)
def lookup(customer: str) -> str:
    runs["lookup"] += 1
    return customer


@tool(effect=Effect.IRREVERSIBLE, approval=True, lease=60)
def wire(amount: int) -> int:
    runs["wire"] += 1
    return amount


@pytest.fixture(autouse=True)
def _reset_runs() -> None:
    runs.clear()


def test_one_approval_of_a_read_covers_one_call() -> None:
    with Runtime("sqlite://:memory:", tools=[lookup]) as rt:
        first = rt.call("lookup", {"customer": "A"})
        assert first.approval_id is not None
        rt.approve(first.approval_id, by="alice")
        assert rt.call("lookup", {"customer": "A"}).status == Status.EXECUTED
        again = rt.call("lookup", {"customer": "A"})
        assert again.status == Status.AWAITING_APPROVAL and again.approval_id != first.approval_id
        assert runs["lookup"] == 1


def test_a_grant_used_by_a_call_that_died_is_asked_again_after_a_lease(clock: Clock) -> None:
    with Runtime("sqlite://:memory:", tools=[wire], clock=clock, wait=0.05) as rt:
        first = rt.call("wire", {"amount": 5})
        assert first.approval_id is not None
        rt.approve(first.approval_id, by="alice", ttl=3600)
        spec = CallSpec(
            tool=wire, input={"amount": 5}, rules=rt.rules, owner="dead", clock=clock,
            wait=0, events_reader=rt.events,
        )  # fmt: skip
        gen = decide_call(spec)
        op = next(gen)
        while not isinstance(op, UseGrant):
            op = gen.send(rt._run(op))
        rt._run(op)  # the grant is used ... and the worker dies before taking the key
        gen.close()
        assert rt.call("wire", {"amount": 5}).status == Status.IN_PROGRESS  # within a lease
        clock.advance(61)
        assert rt.call("wire", {"amount": 5}).status == Status.AWAITING_APPROVAL
        assert runs["wire"] == 0


def test_recovery_leaves_this_runtimes_live_saga_alone(tmp_path: Any) -> None:
    @tool(effect=Effect.MUTATE_LOCAL)
    def unstep(n: int) -> int:
        return n

    @tool(effect=Effect.MUTATE_LOCAL, compensate=unstep)
    def step(n: int) -> int:
        return n

    with Runtime(f"sqlite:///{tmp_path / 's.db'}", tools=[step]) as rt:
        with rt.saga("live") as saga:
            saga.call("step", {"n": 1})
            assert rt.recover_sagas() == []  # its worker is alive: this one
            saga.call("step", {"n": 2})
        assert saga.result == "completed"


def test_a_step_that_redacts_is_refused_in_a_saga() -> None:
    @tool(effect=Effect.MUTATE_EXTERNAL)
    def unsend(phone: str) -> str:
        return phone

    @tool(effect=Effect.MUTATE_EXTERNAL, compensate=unsend, redact=["phone"])
    def send(phone: str) -> str:
        runs["send"] += 1
        return "sent"

    with Runtime("sqlite://:memory:", tools=[send]) as rt:
        with rt.saga("pii") as saga:
            saga.call("send", {"phone": "+51951234567"})
        assert saga.result == "compensated" and runs["send"] == 0
        [rec] = rt.sagas()
        assert "+51951234567" not in rec.steps


def test_the_fingerprint_sees_captured_values_and_is_stable() -> None:
    def limit(n: int) -> Rule:
        return Rule(name="limit", check=lambda i, c: i["amount"] < n, applies_to="wire")

    assert fingerprint([limit(100)]) != fingerprint([limit(1_000_000)])
    assert fingerprint([limit(100)]) == fingerprint([limit(100)])

    class Check:
        def __call__(self, inp: dict[str, Any], ctx: Any) -> bool:
            return True

    one = Rule(name="c", check=Check(), applies_to="wire")
    assert fingerprint([one]) == fingerprint([dataclasses.replace(one, check=Check())])


def test_a_preview_with_no_json_form_is_reported_not_raised() -> None:
    @tool(effect=Effect.MUTATE_LOCAL, simulate=lambda n: {"total": float("nan")})
    def total(n: int) -> int:
        return n

    with Runtime("sqlite://:memory:", tools=[total], dry_run=True) as rt:
        res = rt.call("total", {"n": 1})
        assert res.status == Status.PLANNED
        assert "no JSON form" in res.output["simulate failed"]


def test_nan_is_not_recorded_as_null_when_the_output_needs_conversion() -> None:
    @tool(effect=Effect.MUTATE_LOCAL)
    def report(n: int) -> dict[str, Any]:
        return {"total": float("nan"), "at": dt.date(2026, 1, 1)}

    with Runtime("sqlite://:memory:", tools=[report]) as rt:
        first = rt.call("report", {"n": 1})
        assert "output not recorded" in (first.error or "") and "NaN" in (first.error or "")


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


def test_a_coerced_value_with_no_json_form_is_refused_not_raised() -> None:
    @tool(effect=Effect.MUTATE_LOCAL, coerce=True)
    def count(n: int) -> int:
        return n

    with Runtime("sqlite://:memory:", tools=[count]) as rt:
        res = rt.call("count", {"n": "12345678901234567890"})  # lax: an int beyond 2**53
        assert res.status == Status.REJECTED and "$.n" in (res.reason or "")
