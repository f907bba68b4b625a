"""Approval bound to the exact input: one test per known attack on approvals, on SQLite
(memory and file) and Postgres, sync and async."""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import dar
from dar import ConfigurationError, Effect, NeedsApproval, Runtime, Status, rule, tool
from dar.audit.postmortem import verify
from dar.core.decide import CallSpec, decide_call
from dar.core.ops import UseGrant
from tests.conftest import Clock
from tests.support.runtimes import make as make_kind

MakeRuntime = Callable[..., Runtime]
ran: Counter[str] = Counter()


@tool(effect=Effect.IRREVERSIBLE)
def confirm_payment(order_id: str, amount: int) -> dict[str, Any]:
    ran[f"{order_id}:{amount}"] += 1
    if order_id == "FLAKY" and ran[f"{order_id}:{amount}"] == 1:
        raise RuntimeError("bank timeout")
    return {"confirmed": order_id, "amount": amount}


@tool(effect=Effect.IRREVERSIBLE)
def refund_payment(order_id: str, amount: int) -> dict[str, Any]:
    ran[f"refund:{order_id}:{amount}"] += 1
    return {"refunded": order_id}


@rule(applies_to=["confirm_payment", "refund_payment"])
def big_payments_need_a_person(inp: dict[str, Any], ctx: Any) -> Any:
    return NeedsApproval(f"payment of {inp['amount']}") if inp["amount"] >= 100 else True


PAY = {"order_id": "ORD-1", "amount": 500}


@pytest.fixture(autouse=True)
def _reset() -> None:
    ran.clear()


@pytest.fixture
def rt(make_runtime: MakeRuntime, clock: Clock) -> Runtime:
    return make_runtime(
        tools=[confirm_payment, refund_payment], rules=[big_payments_need_a_person], clock=clock
    )


def ask(rt: Runtime, args: Any = PAY, name: str = "confirm_payment") -> dar.Result:
    return rt.call(name, args, correlation_id="pay-1")


def approved(rt: Runtime, **kwargs: Any) -> str:
    first = ask(rt)
    assert first.status == Status.AWAITING_APPROVAL and first.approval_id
    rt.approve(first.approval_id, by="alice", **kwargs)
    return first.approval_id


def test_waits_then_runs_once_after_approval(rt: Runtime) -> None:
    first = ask(rt)
    assert first.status == Status.AWAITING_APPROVAL
    reply = first.for_model()
    assert reply.is_error and "do not repeat or rephrase" in reply.text.lower()
    again = ask(rt)  # a repeat while pending joins the same request
    assert again.status == Status.AWAITING_APPROVAL and again.approval_id == first.approval_id
    assert [a.status for a in rt.approvals()] == ["pending"]
    assert ran["ORD-1:500"] == 0 and rt.events(status="started") == []
    assert first.approval_id is not None
    rt.approve(first.approval_id, by="alice", note="checked the invoice")
    done = ask(rt)
    assert done.status == Status.EXECUTED and ran["ORD-1:500"] == 1
    assert ask(rt).status == Status.CACHED and ran["ORD-1:500"] == 1
    kinds = [e.status for e in rt.events(correlation_id="pay-1")]
    assert kinds[:4] == ["approval_requested", "approval_requested", "approved", "approval_used"]
    used = rt.events(status="approval_used")[0]
    assert "approved by alice" in (used.rejection_reason or "")
    assert [a.state(rt.clock()) for a in rt.approvals()] == ["used"]
    small = ask(rt, {"order_id": "ORD-2", "amount": 5})
    assert small.status == Status.EXECUTED  # the rule lets small payments through


def test_other_arguments_after_approval_are_a_new_request(rt: Runtime) -> None:
    approved(rt)
    other = ask(rt, {"order_id": "ORD-1", "amount": 5000})
    assert other.status == Status.AWAITING_APPROVAL
    assert ran["ORD-1:5000"] == 0


def test_member_order_does_not_matter(rt: Runtime) -> None:
    approved(rt)
    assert ask(rt, '{"amount": 500, "order_id": "ORD-1"}').status == Status.EXECUTED


def test_a_sibling_tool_does_not_ride_on_the_grant(rt: Runtime) -> None:
    approved(rt)
    sibling = ask(rt, PAY, name="refund_payment")
    assert sibling.status == Status.AWAITING_APPROVAL and ran["refund:ORD-1:500"] == 0


def test_a_grant_is_single_use(rt: Runtime) -> None:
    flaky = {"order_id": "FLAKY", "amount": 300}
    first = ask(rt, flaky)
    assert first.approval_id is not None
    rt.approve(first.approval_id, by="alice")
    assert ask(rt, flaky).status == Status.FAILED  # used, and the key released
    retry = ask(rt, flaky)
    assert retry.status == Status.AWAITING_APPROVAL and retry.approval_id != first.approval_id
    assert ran["FLAKY:300"] == 1


def test_an_expired_grant_is_a_new_request(rt: Runtime, clock: Clock) -> None:
    approved(rt, ttl=60)
    clock.advance(61)
    assert [a.state(clock()) for a in rt.approvals()] == ["expired"]
    assert [a.approval_id for a in rt.approvals(status="expired")]
    assert ask(rt).status == Status.AWAITING_APPROVAL and ran["ORD-1:500"] == 0


def test_changed_rules_void_the_grant(rt: Runtime) -> None:
    approved(rt)
    rt.add_rule(rule(applies_to="confirm_payment", name="weekday")(lambda i, c: True))
    assert ask(rt).status == Status.AWAITING_APPROVAL and ran["ORD-1:500"] == 0


def test_deny_then_retry_is_refused_for_that_input_only(rt: Runtime) -> None:
    first = ask(rt)
    assert first.approval_id is not None
    rt.deny(first.approval_id, by="bob", reason="duplicate invoice")
    for _ in range(2):
        res = ask(rt)
        assert res.status == Status.REJECTED
        assert res.reason == "denied by bob: duplicate invoice"
        assert "refused again" in res.for_model().text
    assert ask(rt, {"order_id": "ORD-1", "amount": 400}).status == Status.AWAITING_APPROVAL
    with pytest.raises(ConfigurationError, match="not pending"):
        rt.approve(first.approval_id, by="alice")
    with pytest.raises(KeyError):
        rt.approve("no-such-id", by="alice")


def test_approval_rows_are_chained_in_the_session(rt: Runtime) -> None:
    approved(rt)
    ask(rt)
    events = rt.events()
    report = verify(events, rt.store.chain_heads(), rt.store.checkpoints())  # type: ignore[attr-defined]
    assert report.ok, report.broken
    approved_row = rt.events(status="approved")[0]
    requested = rt.events(status="approval_requested")[0]
    assert approved_row.correlation_id == "pay-1" and approved_row.call_id == requested.call_id


def test_waiting_for_approval_then_running(rt: Runtime) -> None:
    results: list[dar.Result] = []
    caller = threading.Thread(
        target=lambda: results.append(
            rt.call("confirm_payment", PAY, correlation_id="pay-1", wait_for_approval=20)
        )
    )
    caller.start()
    for _ in range(200):
        pending = rt.approvals(status="pending")
        if pending:
            break
        threading.Event().wait(0.02)
    rt.approve(pending[0].approval_id, by="alice")
    caller.join(30)
    assert [r.status for r in results] == [Status.EXECUTED]
    assert ran["ORD-1:500"] == 1


def test_racing_one_grant_executes_once(shared_url: str, runtime_kind: str) -> None:
    rts = [
        make_kind(runtime_kind, shared_url, tools=[confirm_payment],
                  rules=[big_payments_need_a_person])
        for _ in range(5)
    ]  # fmt: skip
    try:
        first = ask(rts[0])
        assert first.approval_id is not None
        rts[0].approve(first.approval_id, by="alice")
        barrier = threading.Barrier(50)
        statuses: list[Status] = []

        def racer(i: int) -> None:
            barrier.wait()
            statuses.append(ask(rts[i % 5]).status)

        threads = [threading.Thread(target=racer, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert ran["ORD-1:500"] == 1
        assert statuses.count(Status.EXECUTED) == 1
        assert set(statuses) <= {Status.EXECUTED, Status.CACHED, Status.IN_PROGRESS}
    finally:
        for r in rts:
            r.close()


def test_signed_grants(file_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAR_APPROVAL_SECRET", "s3cret")
    tools, rules = [confirm_payment], [big_payments_need_a_person]
    with Runtime(file_url, tools=tools, rules=rules) as signed:
        approved(signed)
        assert ask(signed).status == Status.EXECUTED
    monkeypatch.delenv("DAR_APPROVAL_SECRET")
    with Runtime(file_url, tools=tools, rules=rules) as unsigned:  # approves without a secret
        other = ask(unsigned, {"order_id": "ORD-9", "amount": 900})
        assert other.approval_id is not None
        unsigned.approve(other.approval_id, by="mallory")
    monkeypatch.setenv("DAR_APPROVAL_SECRET", "s3cret")
    with Runtime(file_url, tools=tools, rules=rules) as checking:
        res = ask(checking, {"order_id": "ORD-9", "amount": 900})
        assert res.status == Status.REJECTED and "not signed" in (res.reason or "")
    assert ran["ORD-9:900"] == 0


def test_approval_true_counts_as_a_rule() -> None:
    @tool(effect=Effect.IRREVERSIBLE, approval=True)
    def wire_money(to: str) -> str:
        return to

    with Runtime("sqlite://:memory:", tools=[wire_money]) as rt:  # no ConfigurationError
        assert rt.call("wire_money", {"to": "x"}).status == Status.AWAITING_APPROVAL


def test_cli_lists_approves_and_denies(
    file_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dar.cli.main import main

    monkeypatch.setenv("COLUMNS", "300")
    with Runtime(file_url, tools=[confirm_payment], rules=[big_payments_need_a_person]) as rt:
        one = ask(rt)
        two = ask(rt, {"order_id": "ORD-2", "amount": 200})
        capsys.readouterr()
        assert main(["approvals", "--db", file_url, "--status", "pending"]) == 0
        listed = capsys.readouterr().out
        assert str(one.approval_id) in listed and '{"amount":500,"order_id":"ORD-1"}' in listed
        assert main(["approve", str(one.approval_id), "--by", "alice", "--db", file_url]) == 0
        assert "approved: confirm_payment" in capsys.readouterr().out
        args = ["deny", str(two.approval_id), "--by", "bob", "--reason", "no", "--db", file_url]
        assert main(args) == 0
        assert main(["approve", str(two.approval_id), "--by", "alice", "--db", file_url]) == 2
        assert "is denied, not pending" in capsys.readouterr().out
        assert ask(rt).status == Status.EXECUTED
        assert ask(rt, {"order_id": "ORD-2", "amount": 200}).reason == "denied by bob: no"
        code = main(["trace", "pay-1", "--db", file_url])
        out = capsys.readouterr().out
        assert code == 0 and "approved by alice" in out


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


def test_a_plan_approved_twice_mints_one_grant(make_runtime: Callable[..., Runtime]) -> None:
    # Approving one plan twice once minted two grants: a commit ran twice.
    runs: list[int] = []

    @tool(effect=Effect.READ, approval=True)
    def balance(account: int) -> int:
        runs.append(account)
        return 100

    rt = make_runtime(tools=[balance])
    plan = rt.plan("balance", {"account": 7})
    assert rt.approve(plan, by="alice").status == "approved"
    with pytest.raises(ConfigurationError, match="not pending"):
        rt.approve(plan, by="bob")
    assert len([a for a in rt.approvals() if a.call_id == plan.plan_id]) == 1
    assert rt.commit(plan).status == Status.EXECUTED
    assert rt.commit(plan).status == Status.AWAITING_APPROVAL
    assert runs == [7]


def test_a_refused_unsigned_grant_leaves_the_call_askable(
    make_runtime: Callable[..., Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A grant refused for its signature was once consumed first: every later call waited
    # (`in_progress`) for the tool's lease and no person was asked again.
    monkeypatch.setenv("DAR_APPROVAL_SECRET", "s3cret")

    @tool(effect=Effect.MUTATE_EXTERNAL, approval=True)
    def pay(amount: int) -> int:
        return amount

    rt = make_runtime(tools=[pay])
    asked = rt.call("pay", {"amount": 5})
    assert asked.approval_id is not None
    monkeypatch.delenv("DAR_APPROVAL_SECRET")
    forger = make_runtime(tools=[pay], store=rt.store)
    forger.approve(asked.approval_id, by="mallory")  # written without the secret
    refused = rt.call("pay", {"amount": 5})
    assert refused.status == Status.REJECTED and "not signed" in (refused.reason or "")
    again = rt.call("pay", {"amount": 5})
    assert again.status == Status.AWAITING_APPROVAL
    assert again.approval_id is not None and again.approval_id != asked.approval_id
    monkeypatch.setenv("DAR_APPROVAL_SECRET", "s3cret")
    signer = make_runtime(tools=[pay], store=rt.store)
    signer.approve(again.approval_id, by="alice")
    assert rt.call("pay", {"amount": 5}).status == Status.EXECUTED


@pytest.mark.parametrize("ttl", [math.inf, 1e300, 400 * 24 * 3600, 0, -1, math.nan])
def test_a_grant_lifetime_beyond_a_year_or_not_a_number_is_refused_before_writing(
    make_runtime: Callable[..., Runtime], ttl: float
) -> None:
    # ttl=inf was once accepted, wrote a grant that never expired, then crashed.
    @tool(effect=Effect.MUTATE_EXTERNAL, approval=True)
    def pay(amount: int) -> int:
        return amount

    rt = make_runtime(tools=[pay])
    asked = rt.call("pay", {"amount": 5})
    assert asked.approval_id is not None
    with pytest.raises(ConfigurationError, match="ttl must be positive seconds"):
        rt.approve(asked.approval_id, by="alice", ttl=ttl)
    assert [a.status for a in rt.approvals()] == ["pending"]
