"""The approval and dry-run steps against a model: call, approve, deny, plan, commit and the
clock, in any order Hypothesis finds, on SQLite and Postgres, sync and async. Whatever the
order, each input's effect happens at most once, and only after a person approved exactly
that input."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from dar import Effect, Plan, Status, tool
from tests.conftest import Clock
from tests.support.runtimes import RUNTIME_KINDS
from tests.support.runtimes import make as make_kind

VALUES = st.integers(1, 3)
TTL = 100.0
effects: Counter[int] = Counter()


@tool(effect=Effect.IRREVERSIBLE, approval=True, simulate=lambda v: {"would_pay": v})
def pay(v: int) -> dict[str, int]:
    effects[v] += 1
    return {"paid": v}


@dataclass
class Model:
    """What the runtime must answer, per input."""

    executed: set[int] = field(default_factory=set)
    denied: set[int] = field(default_factory=set)
    pending: dict[int, str] = field(default_factory=dict)  # input -> approval id
    grants: dict[int, float] = field(default_factory=dict)  # input -> expires at
    approved_by_a_person: set[int] = field(default_factory=set)

    def expect(self, v: int, now: float) -> Status:
        if v in self.executed:
            return Status.CACHED
        if v in self.denied:
            return Status.REJECTED
        if v in self.grants and self.grants[v] > now:
            return Status.EXECUTED
        return Status.AWAITING_APPROVAL

    def after(self, v: int, status: Status, approval_id: str | None) -> None:
        if status is Status.EXECUTED:
            self.executed.add(v)
            del self.grants[v]  # single use
        elif status is Status.AWAITING_APPROVAL:
            assert approval_id is not None
            self.grants.pop(v, None)  # an expired grant is gone; a new request is open
            known = self.pending.setdefault(v, approval_id)
            assert known == approval_id, "a repeat joins the open request"


class Approvals(RuleBasedStateMachine):
    url: ClassVar[str] = ""
    kind: ClassVar[str] = "sync"

    def __init__(self) -> None:
        super().__init__()
        effects.clear()
        self.clock = Clock()
        url = self.url
        if url == "sqlite:":
            url = f"sqlite:///{tempfile.mkdtemp()}/m.db"
        else:
            url = f"{url}?schema=m_{uuid.uuid4().hex[:10]}"
        self.rt: Any = make_kind(self.kind, url, tools=[pay], clock=self.clock)
        self.model = Model()
        self.plans: list[tuple[Plan, int, bool]] = []  # plan, input, executed when planned

    def teardown(self) -> None:
        self.rt.close()

    @rule(v=VALUES)
    def call(self, v: int) -> None:
        expected = self.model.expect(v, self.clock())
        res = self.rt.call("pay", {"v": v}, correlation_id="m")
        assert res.status == expected, (v, res.status, res.reason, self.model)
        self.model.after(v, res.status, res.approval_id)

    @precondition(lambda self: bool(self.model.pending))
    @rule(data=st.data(), approve=st.booleans())
    def decide(self, data: st.DataObject, approve: bool) -> None:
        v = data.draw(st.sampled_from(sorted(self.model.pending)))
        approval_id = self.model.pending.pop(v)
        if approve:
            self.rt.approve(approval_id, by="alice", ttl=TTL)
            self.model.grants[v] = self.clock() + TTL
            self.model.approved_by_a_person.add(v)
        else:
            self.rt.deny(approval_id, by="bob", reason="no")
            self.model.denied.add(v)

    @rule(seconds=st.sampled_from([10, 60, 101]))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(v=VALUES)
    def make_plan(self, v: int) -> None:
        plan = self.rt.plan("pay", {"v": v}, correlation_id="m", ttl=TTL)
        assert plan.preview == {"would_pay": v}
        self.plans.append((plan, v, v in self.model.executed))

    @precondition(lambda self: bool(self.plans))
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        plan, v, executed_then = self.plans.pop(data.draw(st.integers(0, len(self.plans) - 1)))
        # Only this input's execution moves its key; approvals and other inputs do not.
        moved = (v in self.model.executed) != executed_then
        expected = (
            Status.STALE
            if moved or self.clock() > plan.expires_at
            else self.model.expect(v, self.clock())
        )
        res = self.rt.commit(plan)
        assert res.status == expected, (v, res.status, res.reason, self.model)
        if expected is not Status.STALE:
            self.model.after(v, res.status, res.approval_id)

    @invariant()
    def each_input_ran_at_most_once_and_only_when_approved(self) -> None:
        assert all(n <= 1 for n in effects.values()), effects
        assert set(effects) <= self.model.approved_by_a_person
        assert set(effects) == self.model.executed


def run(url: str, kind: str) -> None:
    Approvals.url, Approvals.kind = url, kind
    soak = os.environ.get("HYPOTHESIS_PROFILE") == "soak"
    run_state_machine_as_test(
        Approvals,
        settings=settings(
            max_examples=150 if soak else 20,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


@pytest.mark.parametrize("kind", RUNTIME_KINDS)
def test_approvals_against_the_model_on_sqlite(kind: str) -> None:
    run("sqlite:", kind)


@pytest.mark.parametrize("kind", RUNTIME_KINDS)
def test_approvals_against_the_model_on_postgres(pg_base_url: str, kind: str) -> None:
    run(pg_base_url, kind)
