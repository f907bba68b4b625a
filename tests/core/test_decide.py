"""The decision core driven by hand: each operation `decide_call` yields is answered by the test,
so every path is checked with no database, no driver and no clock but the test's."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from dar import Deny, Effect, Status, rule, tool
from dar.core.decide import CallSpec, decide_call
from dar.core.ops import (
    Append,
    CallHandler,
    CallReconcile,
    CheckRule,
    Finish,
    Lookup,
    Mark,
    Op,
    Outcome,
    ReadLog,
    RedactionSalt,
    Take,
    TakeOrLookup,
    Wait,
)
from dar.core.states import ClaimState
from dar.errors import ConfigurationError
from dar.records import Claim, Result
from dar.tools import Reconciled


@tool(effect=Effect.MUTATE_EXTERNAL)
def ship(order: str) -> dict[str, str]:
    return {"shipped": order}


@tool(effect=Effect.MUTATE_EXTERNAL, reconcile=lambda inp: Reconciled(executed=False))
def ship_checked(order: str) -> dict[str, str]:
    return {"shipped": order}


@tool(effect=Effect.READ)
def look(order: str) -> str:
    return order


@rule(applies_to="*")
def anything(inp: dict[str, Any], ctx: Any) -> bool:
    return True


class Script:
    """Drives a decision: ``answer(op)`` gives each operation's answer; every op is kept."""

    def __init__(self, gen: Generator[Op, Any, Result]) -> None:
        self.gen, self.ops = gen, []
        self.op: Op = next(gen)
        self.ops.append(self.op)

    def send(self, value: Any) -> Op | Result:
        try:
            self.op = self.gen.send(value)
        except StopIteration as stop:
            result: Result = stop.value
            return result
        self.ops.append(self.op)
        return self.op


def spec(t: Any, rules: tuple[Any, ...] = (), wait: float = 0.0, **kwargs: Any) -> CallSpec:
    return CallSpec(
        tool=t,
        input={"order": "A"},
        rules=rules,
        owner="me",
        clock=lambda: 100.0,
        wait=wait,
        events_reader=lambda **f: [],
        **kwargs,
    )


def held(state: str, h: str, lease: float | None = None) -> Claim:
    return Claim("k", "ship", h, state, "other", lease, 1, 1, '{"x":1}', None, None, None, None)


def test_a_fresh_call_with_no_rule_takes_the_key_in_one_step() -> None:
    s = Script(decide_call(spec(ship)))
    assert isinstance(s.op, TakeOrLookup) and s.op.take.expect_version is None
    assert isinstance(s.send((True, None)), RedactionSalt)  # for the handler's key
    handler = s.send("salt")
    assert isinstance(handler, CallHandler) and handler.info.key is not None
    assert handler.info.attempt == 1 and handler.info.tool == "ship"
    finish = s.send(Outcome(True, {"shipped": "A"}))
    assert isinstance(finish, Finish)
    assert finish.state is ClaimState.DONE and finish.output == '{"shipped":"A"}'
    result = s.send(True)
    assert isinstance(result, Result) and result.status is Status.EXECUTED


def test_rules_run_between_the_lookup_and_the_claim() -> None:
    s = Script(decide_call(spec(ship, rules=(anything,))))
    assert isinstance(s.op, Lookup)
    assert isinstance(s.send((None, False)), CheckRule)
    assert isinstance(s.send(None), Take)
    assert isinstance(s.send(True), RedactionSalt)
    assert isinstance(s.send("salt"), CallHandler)


def test_a_refusal_is_logged_and_nothing_is_claimed() -> None:
    s = Script(decide_call(spec(ship, rules=(anything,))))
    s.send((None, False))
    op = s.send(Deny("no"))
    assert isinstance(op, Append) and op.event.status == "rejected"
    result = s.send(None)
    assert isinstance(result, Result) and result.status is Status.REJECTED
    assert not any(isinstance(o, (Take, CallHandler)) for o in s.ops)


def test_a_hit_answers_from_the_record_and_writes_nothing_more() -> None:
    s = Script(decide_call(spec(ship)))
    h = s.op.take.input_hash  # type: ignore[union-attr]
    result = s.send((False, held("done", h)))
    assert isinstance(result, Result) and result.status is Status.CACHED
    assert result.output == {"x": 1} and len(s.ops) == 1


def test_a_duplicate_waits_then_answers_in_progress() -> None:
    s = Script(decide_call(spec(ship, wait=0.004)))
    h = s.op.take.input_hash  # type: ignore[union-attr]
    op = s.send((False, held("running", h, lease=200.0)))
    assert isinstance(op, Wait) and op.seconds == pytest.approx(0.002)
    assert isinstance(s.send(0.002), Lookup)
    op = s.send((held("running", h, lease=200.0), False))
    assert isinstance(op, Wait) and op.seconds == pytest.approx(0.002)
    s.send(0.002)
    op = s.send((held("running", h, lease=200.0), False))
    assert isinstance(op, Append) and op.event.status == "in_progress"


def test_a_dead_workers_external_call_becomes_indeterminate() -> None:
    s = Script(decide_call(spec(ship)))
    h = s.op.take.input_hash  # type: ignore[union-attr]
    op = s.send((False, held("running", h, lease=50.0)))
    assert isinstance(op, Mark) and op.state is ClaimState.INDETERMINATE
    result = s.send(True)
    assert isinstance(result, Result) and result.status is Status.INDETERMINATE


def test_reconcile_says_not_executed_and_the_call_runs() -> None:
    s = Script(decide_call(spec(ship_checked)))
    h = s.op.take.input_hash  # type: ignore[union-attr]
    op = s.send((False, held("running", h, lease=50.0)))
    assert isinstance(op, Take) and op.expect_version == 1  # taken over, then asked
    assert isinstance(s.send(True), ReadLog)  # did the crashed attempt run a person's edit?
    assert isinstance(s.send([]), RedactionSalt)
    asked = s.send("salt")
    assert isinstance(asked, CallReconcile) and asked.info is not None
    handler = s.send(Outcome(True, Reconciled(executed=False)))
    assert isinstance(handler, CallHandler) and handler.info == asked.info  # one call


def test_reads_take_no_claim() -> None:
    s = Script(decide_call(spec(look)))
    assert isinstance(s.op, CallHandler) and s.op.info.key is None
    op = s.send(Outcome(True, "A"))
    assert isinstance(op, Append) and op.event.idempotency_key is None


def test_an_irreversible_tool_needs_a_rule() -> None:
    t = tool(effect=Effect.IRREVERSIBLE)(lambda order: None)
    with pytest.raises(ConfigurationError):
        Script(decide_call(spec(t)))
