"""Guards (`Budget`, `Similar`) judge a call against its tool's history, on every store and
both runtimes: what counts, what is given back, holds through the approval flow, flags,
dry runs, and embeddings stored with the calls."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

import dar.embedding
from dar import (
    Budget,
    ConfigurationError,
    Effect,
    Reconciled,
    Runtime,
    Similar,
    Status,
    tool,
)
from dar.core.ops import CallHandler, Take
from tests.conftest import Clock
from tests.support.calls import MakeRuntime, die_at
from tests.support.guards import CountingEmbedder, refund

SESSION = "s-1"


def _refund(rt: Runtime, order: str, amount: float, customer: str = "C-1") -> Any:
    inp = {"customer_id": customer, "order_id": order, "amount": amount}
    return rt.execute(refund, inp, correlation_id=SESSION)


@tool(effect=Effect.MUTATE_EXTERNAL, guards=[Budget(2, per=("session",), within="1h")])
def ping(n: int, fail: bool = False) -> dict[str, int]:
    if fail:
        raise RuntimeError("the provider said no")
    return {"n": n}


@tool(
    effect=Effect.MUTATE_EXTERNAL,
    guards=[Similar("message", same=("to",), within="10m", then="hold")],
)
def whatsapp(to: str, message: str) -> dict[str, str]:
    return {"sent": message}


def _send(rt: Runtime, message: str, to: str = "+34600000001", session: str = SESSION) -> Any:
    return rt.execute(whatsapp, {"to": to, "message": message}, correlation_id=session)


# --- Budget -----------------------------------------------------------------------------------


def test_a_budget_sums_a_field_and_refuses_with_the_numbers(make_runtime: MakeRuntime) -> None:
    rt = make_runtime()
    assert _refund(rt, "O-1", 200).status is Status.EXECUTED
    assert _refund(rt, "O-2", 250).status is Status.EXECUTED
    over = _refund(rt, "O-3", 100)
    assert over.status is Status.REJECTED
    assert over.reason == (
        "450 of 500 used in the last 24h for customer_id C-1; this refund needs 100 "
        "(at most 50 is left)"
    )
    assert over.rule == "Budget(500 of amount per customer_id in 24h)"
    assert "Budget(500 of amount per customer_id in 24h)" in over.for_model().text
    assert _refund(rt, "O-4", 50).status is Status.EXECUTED  # exactly the limit
    assert _refund(rt, "O-5", 100, customer="C-2").status is Status.EXECUTED  # another scope
    rows = rt.events(status="rejected")
    assert [r.rule_name for r in rows] == ["Budget(500 of amount per customer_id in 24h)"]


def test_a_count_budget_per_session_counts_calls(make_runtime: MakeRuntime) -> None:
    rt = make_runtime()
    assert [rt.execute(ping, {"n": n}, correlation_id="a").status for n in range(3)] == [
        Status.EXECUTED,
        Status.EXECUTED,
        Status.REJECTED,
    ]
    assert rt.execute(ping, {"n": 9}, correlation_id="b").status is Status.EXECUTED
    assert rt.execute(ping, {"n": 0}, correlation_id="a").status is Status.CACHED  # not judged


def test_a_budget_window_slides_with_the_clock(make_runtime: MakeRuntime, clock: Clock) -> None:
    rt = make_runtime(clock=clock)
    assert _refund(rt, "O-1", 500).status is Status.EXECUTED
    clock.advance(23 * 3600)
    assert _refund(rt, "O-2", 1).status is Status.REJECTED
    clock.advance(3600 + 1)
    assert _refund(rt, "O-3", 500).status is Status.EXECUTED


def test_a_failed_call_gives_its_share_back(make_runtime: MakeRuntime) -> None:
    rt = make_runtime()
    assert rt.execute(ping, {"n": 1, "fail": True}, correlation_id="a").status is Status.FAILED
    assert rt.execute(ping, {"n": 2}, correlation_id="a").status is Status.EXECUTED
    assert rt.execute(ping, {"n": 3}, correlation_id="a").status is Status.EXECUTED


@tool(
    effect=Effect.MUTATE_EXTERNAL,
    timeout=0.05,
    guards=[Budget(1, per=("session",), within="1h")],
)
def slow_ping(n: int) -> dict[str, int]:
    time.sleep(0.3)
    return {"n": n}


def test_an_indeterminate_call_keeps_its_share(make_runtime: MakeRuntime, clock: Clock) -> None:
    rt = make_runtime(clock=clock)
    assert rt.execute(slow_ping, {"n": 1}, correlation_id="a").status is Status.INDETERMINATE
    clock.advance(3000)  # past the lease: still kept, until someone resolves it
    again = rt.execute(slow_ping, {"n": 2}, correlation_id="a")
    assert again.status is Status.REJECTED
    assert again.reason is not None and again.reason.startswith("1 of 1 calls used")


def test_a_crashed_calls_share_lasts_its_lease_or_its_running_claim(
    make_runtime: MakeRuntime, clock: Clock
) -> None:
    rt = make_runtime(clock=clock)
    before_claim = {"customer_id": "C-1", "order_id": "O-1", "amount": 500}
    die_at(rt, refund, before_claim, Take)
    assert _refund(rt, "O-2", 1).status is Status.REJECTED
    clock.advance(refund.lease + 1)  # no claim was taken for it: it stops counting
    assert _refund(rt, "O-3", 500).status is Status.EXECUTED
    running = {"customer_id": "C-2", "order_id": "O-4", "amount": 500}
    die_at(rt, refund, running, CallHandler)
    clock.advance(refund.lease + 1)  # its claim still says it may have run
    assert _refund(rt, "O-5", 1, customer="C-2").status is Status.REJECTED


RECONCILED = {"executed": True}


@tool(
    effect=Effect.MUTATE_EXTERNAL,
    reconcile=lambda inp: Reconciled(executed=RECONCILED["executed"], output={}),
    guards=[Budget(500, of="amount", per=("customer_id",), within="24h")],
)
def checked_refund(customer_id: str, order_id: str, amount: float) -> dict[str, Any]:
    return {"refunded": amount}


@pytest.mark.parametrize("executed", [True, False])
def test_a_reconciled_crash_counts_its_effect_once(
    make_runtime: MakeRuntime, clock: Clock, executed: bool
) -> None:
    rt = make_runtime(clock=clock)
    crashed = {"customer_id": "C-1", "order_id": "O-1", "amount": 300}
    die_at(rt, checked_refund, crashed, CallHandler)
    clock.advance(checked_refund.lease + 1)
    RECONCILED["executed"] = executed
    again = rt.execute(checked_refund, crashed)
    assert again.status is (Status.CACHED if executed else Status.EXECUTED)
    rest = {"customer_id": "C-1", "order_id": "O-2", "amount": 200}
    assert rt.execute(checked_refund, rest).status is Status.EXECUTED  # 300 counted once
    over = rt.execute(checked_refund, {**rest, "order_id": "O-3", "amount": 1})
    assert over.status is Status.REJECTED


@tool(
    effect=Effect.MUTATE_EXTERNAL,
    approval=True,
    guards=[Budget(100, of="amount", per=("customer_id",), within="24h")],
)
def big_refund(customer_id: str, order_id: str, amount: float) -> dict[str, Any]:
    return {"refunded": amount}


def test_a_call_awaiting_approval_counts_and_runs_on_its_own_share(
    make_runtime: MakeRuntime,
) -> None:
    rt = make_runtime()
    first = {"customer_id": "C-1", "order_id": "O-1", "amount": 80}
    asked = rt.execute(big_refund, first)
    assert asked.status is Status.AWAITING_APPROVAL
    over = rt.execute(big_refund, {"customer_id": "C-1", "order_id": "O-2", "amount": 30})
    assert over.status is Status.REJECTED
    assert over.reason is not None and over.reason.startswith("80 of 100 used")
    assert asked.approval_id is not None
    rt.approve(asked.approval_id, by="ann")
    assert rt.execute(big_refund, first).status is Status.EXECUTED  # its share is its own
    fits = rt.execute(big_refund, {"customer_id": "C-1", "order_id": "O-3", "amount": 20})
    assert fits.status is Status.AWAITING_APPROVAL


def test_a_guard_on_a_field_the_tool_does_not_have_is_refused_at_declaration() -> None:
    with pytest.raises(ConfigurationError, match=r"reads \$\.total"):

        @tool(effect=Effect.MUTATE_LOCAL, guards=[Budget(5, of="total", within="1h")])
        def spend(amount: float) -> None: ...

    with pytest.raises(ConfigurationError, match="within='soon'"):
        Budget(5, within="soon")


# --- Similar ----------------------------------------------------------------------------------


def test_a_near_duplicate_is_held_for_a_person_who_may_let_it_run(
    make_runtime: MakeRuntime,
) -> None:
    rt = make_runtime(embedder=CountingEmbedder())
    first = _send(rt, "Your order ORD-1 ships tomorrow")
    assert first.status is Status.EXECUTED
    held = _send(rt, "Good news: your order ORD-1 ships tomorrow!")
    assert held.status is Status.AWAITING_APPROVAL
    assert held.rule == "Similar(message same to in 10m, session)"
    (done,) = [r for r in rt.events(status="executed") if r.event_id == first.event_id]
    assert f"the call of event {done.call_id} already sent" in (held.reason or "")
    assert "'Your order ORD-1 ships tomorrow'" in (held.reason or "")
    assert "similarity" in (held.reason or "")
    assert held.approval_id is not None
    rt.approve(held.approval_id, by="ann")
    assert _send(rt, "Good news: your order ORD-1 ships tomorrow!").status is Status.EXECUTED
    assert _send(rt, "Your order ORD-1 ships tomorrow").status is Status.CACHED  # exact


def test_other_ids_outcomes_recipients_and_sessions_are_never_held(
    make_runtime: MakeRuntime,
) -> None:
    rt = make_runtime(embedder=CountingEmbedder())
    assert _send(rt, "Your refund for ORD-1 was issued").status is Status.EXECUTED
    assert _send(rt, "Your refund for ORD-2 was issued").status is Status.EXECUTED
    assert _send(rt, "Your refund for ORD-1 was denied").status is Status.EXECUTED
    assert _send(rt, "Your refund for ORD-1 was issued!", to="+1").status is Status.EXECUTED
    other = _send(rt, "Your refund for ORD-1 was issued!", session="s-2")
    assert other.status is Status.EXECUTED


@tool(
    effect=Effect.MUTATE_EXTERNAL,
    guards=[Similar("message", within="10m", then="reject", scope="global")],
)
def notify(message: str) -> dict[str, str]:
    return {"sent": message}


@tool(effect=Effect.MUTATE_EXTERNAL, guards=[Similar("message", within="10m", then="flag")])
def remind(message: str) -> dict[str, str]:
    return {"sent": message}


def test_reject_refuses_and_flag_runs_marked(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(embedder=CountingEmbedder())
    assert rt.execute(notify, {"message": "Payment of 40 EUR due on 3 May"}).status.value == (
        "executed"
    )
    again = rt.execute(notify, {"message": "Payment of 40 EUR due on 3 May!"}, correlation_id="x")
    assert again.status is Status.REJECTED  # global: any session
    assert again.rule == "Similar(message in 10m, global)"
    assert rt.execute(remind, {"message": "Pay ORD-7 today"}).status is Status.EXECUTED
    flagged = rt.execute(remind, {"message": "Pay ORD-7 today!"})
    assert flagged.status is Status.EXECUTED
    (row,) = [r for r in rt.events(status="executed") if r.event_id == flagged.event_id]
    assert row.rule_name == "Similar(message in 10m, session)"
    assert row.rejection_reason is not None and row.rejection_reason.startswith("flagged: ")


def test_embeddings_are_stored_so_a_restart_embeds_only_new_texts(
    make_runtime: MakeRuntime,
) -> None:
    before = CountingEmbedder()
    rt = make_runtime(embedder=before)
    _send(rt, "Your order ORD-1 ships tomorrow")
    _send(rt, "Your order ORD-2 ships tomorrow")
    assert len(before.texts) == 2
    after = CountingEmbedder()
    restarted = make_runtime(embedder=after, store=rt.store)
    assert _send(restarted, "Your order ORD-2 ships tomorrow!").status is (Status.AWAITING_APPROVAL)
    assert after.texts == ["Your order ORD-2 ships tomorrow!"]


def test_the_default_embedder_holds_a_rephrasing() -> None:
    rt = Runtime("sqlite://:memory:", tools=[whatsapp])
    assert _send(rt, "Your order ORD-1 ships tomorrow").status is Status.EXECUTED
    held = _send(rt, "Good news: ORD-1 will be shipped tomorrow!")
    assert held.status is Status.AWAITING_APPROVAL
    rt.close()


def test_a_missing_extra_is_a_configuration_error_at_registration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dar.embedding, "_default", None)
    monkeypatch.setitem(sys.modules, "wordllama", None)
    with pytest.raises(ConfigurationError, match=r"\[semantic\]"):
        Runtime("sqlite://:memory:", tools=[whatsapp])
    Runtime("sqlite://:memory:", tools=[whatsapp], embedder=CountingEmbedder()).close()


def test_a_failing_embedder_refuses_the_call_naming_it(make_runtime: MakeRuntime) -> None:
    def broken(texts: Any) -> list[list[float]]:
        raise TimeoutError("embeddings API timed out")

    rt = make_runtime(embedder=broken)
    res = _send(rt, "hello")
    assert res.status is Status.REJECTED
    assert res.reason == "the embedder failed: TimeoutError: embeddings API timed out"


# --- dry runs ---------------------------------------------------------------------------------


def test_a_plan_says_whether_guards_would_refuse_or_hold_and_reserves_nothing(
    make_runtime: MakeRuntime,
) -> None:
    rt = make_runtime(tools=[refund, whatsapp], embedder=CountingEmbedder())
    _refund(rt, "O-1", 450)
    plan = rt.plan(refund, {"customer_id": "C-1", "order_id": "O-2", "amount": 100})
    assert plan.verdict == "be refused"
    assert plan.reasons[0].startswith("Budget(500 of amount per customer_id in 24h): 450 of")
    fits = rt.plan(refund, {"customer_id": "C-1", "order_id": "O-3", "amount": 50})
    assert fits.verdict == "execute"
    assert _refund(rt, "O-4", 50).status is Status.EXECUTED  # the plan reserved nothing
    committed = rt.commit(fits)  # judged again at commit: the budget is spent now
    assert committed.status is Status.REJECTED
    assert committed.reason is not None and committed.reason.startswith("500 of 500 used")
    _send(rt, "Your order ORD-1 ships tomorrow")
    held = rt.plan(
        whatsapp,
        {"to": "+34600000001", "message": "Your order ORD-1 ships tomorrow!"},
        correlation_id=SESSION,
    )
    assert held.verdict == "be held for a person's approval"
