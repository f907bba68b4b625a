"""Approve with an edit: the person's arguments run once in place of the request's, bound
to that request, checked against the schema and the rules when approved and again when
used; on every store, sync and async."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dar import (
    CanonicalizationError,
    ConfigurationError,
    Effect,
    NeedsApproval,
    Reconciled,
    Runtime,
    Status,
    rule,
    tool,
)
from dar.audit.postmortem import verify
from dar.records import Approval
from tests.conftest import Clock, execute_sql
from tests.support import runs as R
from tests.support.calls import abandon_claim, wait_until
from tests.support.payments import LIMITS, RULES, paid, pay, reset

MakeRuntime = Callable[..., Runtime]
ASKED = {"order_id": "ORD-1", "amount": 500}
EDIT = {"order_id": "ORD-1", "amount": 300}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    reset()
    yield
    reset()


@pytest.fixture
def rt(make_runtime: MakeRuntime, clock: Clock) -> Runtime:
    return make_runtime(tools=[pay], rules=RULES, clock=clock)


def ask(rt: Runtime, args: Any = ASKED) -> Any:
    return rt.call("pay", args, correlation_id="pay-1")


def requested(rt: Runtime) -> str:
    first = ask(rt)
    assert first.status == Status.AWAITING_APPROVAL and first.approval_id
    return str(first.approval_id)


def edited(rt: Runtime, arguments: Any = EDIT) -> Approval:
    decided: Approval = rt.approve(requested(rt), by="alice", arguments=arguments)
    return decided


def test_the_edited_arguments_run_once_and_the_request_never(rt: Runtime) -> None:
    grant = edited(rt)
    assert grant.edited_input == '{"amount":300,"order_id":"ORD-1"}' and grant.edited_hash
    done = ask(rt)
    assert done.status == Status.EXECUTED and done.output == {"paid": "ORD-1", "amount": 300}
    assert done.extra["edited"]["changes"] == "$.amount 500 -> 300"
    assert done.input_hash == grant.edited_hash
    reply = done.for_model().text
    assert "alice" in reply and "$.amount 500 -> 300" in reply and '"amount":300' in reply
    again = ask(rt)  # the request again: answered from the record, never a conflict
    assert again.status == Status.CACHED and again.output == {"paid": "ORD-1", "amount": 300}
    assert paid == [EDIT]


def test_the_log_keeps_the_request_and_the_edit(rt: Runtime) -> None:
    grant = edited(rt)
    ask(rt)
    rows = {e.status: e for e in rt.events(correlation_id="pay-1")}
    assert rows["approval_requested"].input == ASKED
    decision = rows["approved"]
    assert decision.input == EDIT and decision.input_hash == grant.edited_hash
    assert "approved by alice with an edit: $.amount 500 -> 300" in (
        decision.rejection_reason or ""
    )
    assert rows["approval_used"].input == ASKED
    assert "with an edit: $.amount 500 -> 300" in (rows["approval_used"].rejection_reason or "")
    for kind in ("started", "executed"):  # the effect ran on exactly what the log shows
        assert rows[kind].input == EDIT and rows[kind].input_hash == grant.edited_hash
    report = verify(rt.events(), rt.store.chain_heads(), rt.store.checkpoints())  # type: ignore[attr-defined]
    assert report.ok, report.broken


def test_the_edited_call_itself_does_not_ride_on_the_grant(rt: Runtime) -> None:
    edited(rt)
    direct = ask(rt, EDIT)  # the grant is bound to the request, not to its edit
    assert direct.status == Status.AWAITING_APPROVAL and paid == []
    assert ask(rt).status == Status.EXECUTED and paid == [EDIT]


def test_identical_arguments_are_a_plain_approval(rt: Runtime) -> None:
    grant = edited(rt, json.dumps({"amount": 500, "order_id": "ORD-1"}))
    assert grant.edited_input is None and grant.edited_hash is None
    done = ask(rt)
    assert done.status == Status.EXECUTED and "edited" not in done.extra and paid == [ASKED]


def test_an_edit_that_breaks_the_schema_is_refused_and_the_request_stays_pending(
    rt: Runtime,
) -> None:
    approval_id = requested(rt)
    with pytest.raises(ConfigurationError, match=r"invalid arguments: \$\.amount"):
        rt.approve(approval_id, by="alice", arguments={"order_id": "ORD-1", "amount": "lots"})
    with pytest.raises(CanonicalizationError, match="at \\$: arguments must be a JSON object"):
        rt.approve(approval_id, by="alice", arguments="[1]")
    assert [a.status for a in rt.approvals()] == ["pending"]
    assert rt.events(status="approved") == [] and ask(rt).status == Status.AWAITING_APPROVAL


def test_an_edit_that_breaks_a_rule_is_refused_and_the_request_stays_pending(
    rt: Runtime,
) -> None:
    approval_id = requested(rt)
    with pytest.raises(ConfigurationError, match=r"within_the_limits.*not between 1 and 1000"):
        rt.approve(approval_id, by="alice", arguments={"order_id": "ORD-1", "amount": 5000})
    assert [a.status for a in rt.approvals()] == ["pending"] and paid == []


def test_an_edit_that_breaks_a_rule_by_the_time_it_is_used_is_rejected(rt: Runtime) -> None:
    grant = edited(rt)
    LIMITS["min"] = 400  # the world moved (the request is still fine, the edit is not)
    refused = ask(rt)
    assert refused.status == Status.REJECTED and refused.rule == "within_the_limits"
    assert refused.reason == "not between 400 and 1000" and "edited" in refused.extra
    row = rt.events(status="rejected")[0]
    assert row.input == EDIT and row.input_hash == grant.edited_hash
    assert paid == []
    again = ask(rt)  # the grant is spent on the refusal: a person is asked again
    assert again.status == Status.AWAITING_APPROVAL and again.approval_id != grant.approval_id


def test_an_edit_needs_the_tool_registered(rt: Runtime, make_runtime: MakeRuntime) -> None:
    approval_id = requested(rt)
    toolless = make_runtime(store=rt.store, rules=RULES)  # the same store, no tools
    with pytest.raises(ConfigurationError, match="'pay' is not registered in this runtime"):
        toolless.approve(approval_id, by="alice", arguments=EDIT)
    assert [a.status for a in rt.approvals()] == ["pending"]


def test_a_replay_serves_the_edited_result_for_the_request(
    rt: Runtime, make_runtime: MakeRuntime
) -> None:
    edited(rt)
    live = [ask(rt), ask(rt)]
    replayer = make_runtime(replay="pay-1", store=rt.store, tools=[pay], rules=RULES)
    replayed = [ask(replayer) for _ in range(3)]
    assert [r.status for r in replayed] == [Status.AWAITING_APPROVAL, *[r.status for r in live]]
    assert [r.output for r in replayed[1:]] == [r.output for r in live]
    assert paid == [EDIT]


def test_a_signed_edit_cannot_be_changed_in_the_database(
    file_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAR_APPROVAL_SECRET", "s3cret")
    with Runtime(file_url, tools=[pay], rules=RULES) as signed:
        edited(signed)
        assert ask(signed).status == Status.EXECUTED and paid == [EDIT]  # signed: usable
        other = {"order_id": "ORD-2", "amount": 500}
        signed.approve(
            str(ask(signed, other).approval_id), by="alice", arguments={**other, "amount": 200}
        )
        forged = '{"amount":900,"order_id":"ORD-2"}'
        execute_sql(
            signed.store,
            f"UPDATE agent_tool_approvals SET edited_input = '{forged}', edited_hash = "
            f"'{hashlib.sha256(forged.encode()).hexdigest()}' WHERE status = 'approved'",
        )
        res = ask(signed, other)
        assert res.status == Status.REJECTED and "not signed" in (res.reason or "")
    assert paid == [EDIT]


def test_waiting_for_approval_runs_the_edit(rt: Runtime) -> None:
    results: list[Any] = []
    caller = threading.Thread(target=lambda: results.append(
        rt.call("pay", ASKED, correlation_id="pay-1", wait_for_approval=20)
    ))  # fmt: skip
    caller.start()
    wait_until(lambda: bool(rt.approvals(status="pending")))
    rt.approve(rt.approvals(status="pending")[0].approval_id, by="alice", arguments=EDIT)
    caller.join(30)
    assert [(r.status, r.output) for r in results] == [
        (Status.EXECUTED, {"paid": "ORD-1", "amount": 300})
    ]
    assert paid == [EDIT]


def test_a_durable_run_resumes_on_the_edit_and_its_model_reads_it(
    make_runtime: MakeRuntime,
    runtime_kind: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(R, "MARKS", tmp_path)
    monkeypatch.setattr(R, "RUNTIME", None)
    rt = make_runtime(tools=R.TOOLS, rules=[R.refund_limit])
    R.install(rt)
    agent = R.agent_for(runtime_kind)
    with R.ConversationServer(R.APPROVAL) as model:
        waiting = rt.start(agent, "w1", model.url, "w1")
        assert waiting.status == "suspended" and waiting.approval_id
        edit = {"order_id": "ORD-w1", "amount": 150}
        rt.approve(waiting.approval_id, by="alice", arguments=edit)
        done = rt.start(agent, "w1", model.url, "w1")
        assert (done.status, done.output) == ("finished", "Done with ORD-w1.")
        said = model.of("w1")[-1]["messages"][-1]["content"]
    assert "alice" in said and "$.amount 300 -> 150" in said
    assert R.count(tmp_path, "effect.refund.ORD-w1.150") == 1
    assert R.count(tmp_path, "effect.refund.ORD-w1.300") == 0


settled: list[dict[str, Any]] = []


def _settled(inp: dict[str, Any]) -> Reconciled:
    return Reconciled(True, {"settled": inp["amount"]}) if inp in settled else Reconciled(False)


@tool(effect=Effect.MUTATE_EXTERNAL, lease=30, reconcile=_settled)
def settle(order_id: str, amount: int) -> dict[str, Any]:
    settled.append({"order_id": order_id, "amount": amount})
    return {"settled": amount}


@pytest.mark.parametrize("happened", [True, False])
def test_a_crashed_edit_is_reconciled_on_the_input_it_ran_on(
    store_url: str, clock: Clock, happened: bool
) -> None:
    settled.clear()
    every = rule(applies_to="settle", name="a_person_settles")(
        lambda i, c: NeedsApproval("a person settles")
    )
    with Runtime(store_url, tools=[settle], rules=[every], clock=clock) as rt:
        first = rt.call("settle", ASKED)
        rt.approve(str(first.approval_id), by="alice", arguments=EDIT)
        abandon_claim(rt, settle, ASKED)  # the edit's worker dies holding the key...
        if happened:
            settled.append(EDIT)  # ...after its effect
        clock.advance(31)
        after = rt.call("settle", ASKED)
        if happened:  # answered from the effect that happened: never run a second time
            assert (after.status, after.output) == (Status.CACHED, {"settled": 300})
            assert rt.events(status="executed")[0].input == EDIT
        else:  # it did not happen: a person decides again, nothing ran
            assert after.status == Status.AWAITING_APPROVAL
        assert settled == ([EDIT] if happened else [])
