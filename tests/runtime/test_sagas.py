"""Sagas: compensation in reverse, exactly once, with the pivot rule, retries, operators,
and recovery by another worker; on SQLite (memory and file) and Postgres, sync and async."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from dar import ConfigurationError, Deny, Effect, Reconciled, Runtime, Status, Tool, rule, tool
from dar.core.saga import SagaAborted
from tests.conftest import Clock

MakeRuntime = Callable[..., Runtime]
world: Counter[str] = Counter()
fail: set[str] = set()


@tool(effect=Effect.MUTATE_EXTERNAL)
def cancel_booking(order_id: str, zone: str) -> str:
    world[f"cancel:{order_id}"] += 1
    return "cancelled"


@tool(effect=Effect.MUTATE_EXTERNAL, compensate=cancel_booking)
def book_courier(order_id: str, zone: str) -> dict[str, str]:
    world[f"book:{order_id}"] += 1
    return {"booking": f"B-{order_id}"}


@tool(effect=Effect.MUTATE_EXTERNAL)
def refund(booking: str) -> str:
    world[f"refund:{booking}"] += 1
    if "refund" in fail:
        raise RuntimeError("bank unreachable")
    return "refunded"


@tool(
    effect=Effect.MUTATE_EXTERNAL,
    compensate=refund,
    compensate_input=lambda inp, out: {"booking": out["charge"]},
)
def charge(order_id: str, amount: int) -> dict[str, str]:
    world[f"charge:{order_id}"] += 1
    if amount > 1000:
        raise RuntimeError("card declined")
    return {"charge": f"C-{order_id}"}


@tool(effect=Effect.IRREVERSIBLE)
def send_confirmation(order_id: str) -> str:
    world[f"confirm:{order_id}"] += 1
    return "sent"


@tool(effect=Effect.READ)
def quote(zone: str) -> int:
    return 1200


@tool(effect=Effect.MUTATE_LOCAL)
def scribble(text: str) -> str:
    return text


@rule(applies_to="send_confirmation")
def only_paid(inp: dict[str, Any], ctx: Any) -> Any:
    return Deny("not paid") if inp["order_id"] == "UNPAID" else True


class Died(BaseException):
    """The worker process dies here (as SIGKILL would: no outcome recorded by the caller)."""


TOOLS: list[Tool[Any]] = [book_courier, charge, send_confirmation, quote, scribble]


@pytest.fixture(autouse=True)
def _reset() -> None:
    world.clear()
    fail.clear()


@pytest.fixture
def rt(make_runtime: MakeRuntime, clock: Clock) -> Runtime:
    return make_runtime(tools=TOOLS, rules=[only_paid], clock=clock)


def app(url: str) -> Runtime:
    """What `dar sagas resume --app tests.runtime.test_sagas:app` builds."""
    return Runtime(url, tools=TOOLS, rules=[only_paid])


def checkout(rt: Runtime, order: str, amount: int, *, confirm: str | None = None) -> Any:
    with rt.saga(f"checkout-{order}", correlation_id=f"conv-{order}") as saga:
        saga.call("quote", {"zone": "puno"})
        saga.call("book_courier", {"order_id": order, "zone": "puno"})
        saga.call("charge", {"order_id": order, "amount": amount})
        saga.call("send_confirmation", {"order_id": confirm or order})
    return saga


def test_a_saga_that_completes(rt: Runtime) -> None:
    saga = checkout(rt, "ORD-1", 100)
    assert saga.result == "completed"
    assert world == Counter({"book:ORD-1": 1, "charge:ORD-1": 1, "confirm:ORD-1": 1})
    [rec] = rt.sagas("completed")
    assert rec.saga_id == "checkout-ORD-1"


def test_a_failed_step_undoes_the_others_in_reverse_once(rt: Runtime) -> None:
    saga = checkout(rt, "ORD-2", 5000)
    assert saga.result == "compensated"
    assert world["cancel:ORD-2"] == 1 and world["refund:C-ORD-2"] == 0  # the charge failed
    assert world["confirm:ORD-2"] == 0  # the block ended at the failed step
    tools = [e.tool_name for e in rt.events(correlation_id="conv-ORD-2", status="executed")]
    assert tools == ["quote", "book_courier", "cancel_booking"]
    kinds = [e.status for e in rt.events(correlation_id="conv-ORD-2") if e.tool_name == "saga"]
    assert kinds == ["saga_started", "saga_compensating", "saga_ended"]


def test_a_refused_last_step_refunds_and_cancels(rt: Runtime) -> None:
    saga = checkout(rt, "ORD-3", 100, confirm="UNPAID")
    assert saga.result == "compensated"
    assert world["refund:C-ORD-3"] == 1 and world["cancel:ORD-3"] == 1  # compensate_input
    events = rt.events(correlation_id="conv-ORD-3", status="executed")
    assert [e.tool_name for e in events][-2:] == ["refund", "cancel_booking"]  # reverse order


def test_an_exception_in_the_block_compensates_and_propagates(rt: Runtime) -> None:
    with pytest.raises(ZeroDivisionError), rt.saga("s-exc") as saga:
        saga.call("book_courier", {"order_id": "ORD-4", "zone": "puno"})
        1 / 0  # noqa: B018
    assert saga.result == "compensated" and world["cancel:ORD-4"] == 1


def test_the_irreversible_step_is_the_pivot(rt: Runtime) -> None:
    with rt.saga("s-pivot") as saga:
        saga.call("book_courier", {"order_id": "ORD-5", "zone": "puno"})
        saga.call("send_confirmation", {"order_id": "ORD-5"})
        try:
            saga.call("charge", {"order_id": "ORD-5", "amount": 1})
        except SagaAborted as exc:
            res = exc.result
            raise
    # Refused before it ran; nothing before the pivot is undone: a person decides.
    assert res.status == Status.REJECTED and "must be the saga's last step" in (res.reason or "")
    assert saga.result == "needs_operator" and world["charge:ORD-5"] == 0
    assert world["cancel:ORD-5"] == 0 and world["confirm:ORD-5"] == 1
    assert "irreversible and happened" in (rt.sagas("needs_operator")[0].error or "")


def test_a_step_without_compensation_is_refused(rt: Runtime) -> None:
    with rt.saga("s-nocomp") as saga:
        saga.call("scribble", {"text": "x"})
    assert saga.result == "compensated"


def test_a_failing_compensation_is_retried_then_waits_for_an_operator(rt: Runtime) -> None:
    fail.add("refund")
    saga = checkout(rt, "ORD-6", 100, confirm="UNPAID")
    assert saga.result == "compensation_failed"
    assert world["refund:C-ORD-6"] == 3  # TRIES attempts, nothing swallowed
    assert world["cancel:ORD-6"] == 0  # stopped: the operator decides
    [stuck] = rt.sagas("compensation_failed")
    assert "failed 3 times" in (stuck.error or "")
    fail.clear()
    assert rt.recover_sagas() == []  # not without being asked
    assert rt.recover_sagas(stuck=True) == ["checkout-ORD-6"]
    assert rt.sagas("compensated")[0].saga_id == "checkout-ORD-6"
    assert world["refund:C-ORD-6"] == 4 and world["cancel:ORD-6"] == 1


def test_a_saga_id_is_used_once(rt: Runtime) -> None:
    checkout(rt, "ORD-7", 100)
    with pytest.raises(ConfigurationError, match="exists and is completed"):
        checkout(rt, "ORD-7", 100)


def test_an_indeterminate_step_is_settled_before_anything_is_undone(
    make_runtime: MakeRuntime, clock: Clock
) -> None:
    """A worker dies inside a step (its claim stays running): the next worker settles the
    step by asking the tool's reconcile, then undoes exactly what happened."""
    seen: Counter[str] = Counter()

    @tool(effect=Effect.MUTATE_EXTERNAL)
    def unship(order_id: str) -> str:
        seen["unship"] += 1
        return "ok"

    @tool(
        effect=Effect.MUTATE_EXTERNAL,
        compensate=unship,
        reconcile=lambda inp: Reconciled(executed=seen["ship"] > 0, output="found"),
        lease=60,
    )
    def ship(order_id: str) -> str:
        seen["ship"] += 1
        raise Died  # the worker dies right after the effect

    worker = make_runtime(tools=[ship], clock=clock, owner="w1")
    with pytest.raises(Died), worker.saga("s-crash") as saga:
        saga.call("ship", {"order_id": "ORD-8"})
    assert saga.result == "open"  # a dying worker does not compensate: recovery does
    clock.advance(400)
    other = make_runtime(tools=[ship], clock=clock, owner="w2")
    assert other.recover_sagas() == ["s-crash"]
    assert other.sagas("compensated") and seen == Counter({"ship": 1, "unship": 1})


def test_needs_operator_without_reconcile(make_runtime: MakeRuntime, clock: Clock) -> None:
    @tool(effect=Effect.MUTATE_EXTERNAL)
    def undo_it(n: int) -> str:
        return "undone"

    @tool(effect=Effect.MUTATE_EXTERNAL, compensate=undo_it)
    def do_it(n: int) -> str:
        raise Died

    worker = make_runtime(tools=[do_it], clock=clock)
    with pytest.raises(Died), worker.saga("s-op") as saga:
        saga.call("do_it", {"n": 1})
    clock.advance(400)
    assert worker.recover_sagas() == ["s-op"]
    [rec] = worker.sagas("needs_operator")
    assert "resolve its key" in (rec.error or "")
    key = worker.events(tool="do_it", status="cancelled")[0].idempotency_key
    from dar.core.ops import GetClaim, Resolve
    from dar.core.rows import resolved_row

    assert key is not None
    claim = worker.store.get_claim(GetClaim(key))
    assert claim is not None
    row = resolved_row(claim, True, '"done"', "operator", clock())
    worker.store.resolve(Resolve(key, True, '"done"', clock(), row, True))
    assert worker.recover_sagas(stuck=True) == ["s-op"]
    assert worker.sagas("compensated")
    statuses = [e.status for e in worker.events(tool="undo_it")]
    assert statuses == ["started", "executed"]


def test_saga_aborted_carries_the_step(rt: Runtime) -> None:
    caught: list[SagaAborted] = []
    with rt.saga("s-abort") as saga:
        try:
            saga.call("charge", {"order_id": "X", "amount": 5000})
        except SagaAborted as exc:
            caught.append(exc)
            raise
    assert caught[0].result.status == Status.FAILED and caught[0].state == "compensated"


def test_cli_lists_and_resumes_sagas(
    tmp_path: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dar.cli.main import main

    monkeypatch.setenv("COLUMNS", "300")
    url = f"sqlite:///{tmp_path / 's.db'}"
    fail.add("refund")
    with Runtime(url, tools=TOOLS, rules=[only_paid]) as rt:
        checkout(rt, "ORD-9", 100, confirm="UNPAID")
    capsys.readouterr()
    assert main(["sagas", "--state", "failed", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "checkout-ORD-9" in out and "compensation_failed" in out
    fail.clear()
    assert main(["sagas", "resume", "--db", url]) == 2  # the tools are code: name them
    args = ["sagas", "resume", "--app", "tests.runtime.test_sagas:app", "--db", url]
    assert main(args) == 0
    assert "resumed 1 sagas: checkout-ORD-9" in capsys.readouterr().out
    assert main(["sagas", "--state", "compensated", "--db", url]) == 0
    assert "checkout-ORD-9" in capsys.readouterr().out
    assert world["cancel:ORD-9"] == 1


runs: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset_runs() -> None:
    runs.clear()


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


def test_a_given_key_that_spells_a_step_key_never_answers_the_step(
    make_runtime: Callable[..., Runtime],
) -> None:
    # A customer reference reading "saga:trip-7:0", through a tool keyed by that field,
    # once made the saga's own step answer `conflict`: the runtime's keys are its own.
    runs: list[str] = []

    @tool(effect=Effect.MUTATE_EXTERNAL)
    def unreserve(ref: str, seat: str) -> str:
        return "released"

    @tool(effect=Effect.MUTATE_EXTERNAL, key=lambda i: i["ref"], compensate=unreserve)
    def reserve(ref: str, seat: str) -> str:
        runs.append(f"{ref}/{seat}")
        return "reserved"

    rt = make_runtime(tools=[reserve, unreserve])
    assert rt.call("reserve", {"ref": "saga:trip-7:0", "seat": "1A"}).status == Status.EXECUTED
    with rt.saga("trip-7") as saga:
        step = saga.call("reserve", {"ref": "R-1", "seat": "2B"})
    assert step.status == Status.EXECUTED and saga.result == "completed"
    assert runs == ["saga:trip-7:0/1A", "R-1/2B"]


def test_one_broken_saga_does_not_stop_the_recovery_of_the_others(
    make_runtime: Callable[..., Runtime], clock: Clock
) -> None:
    # One saga whose compensate_input raised once made every recover_sagas() raise.
    undone: list[str] = []

    @tool(effect=Effect.MUTATE_EXTERNAL)
    def release(room: str) -> str:
        undone.append(room)
        return "released"

    def broken(args: Any, output: Any) -> Any:
        raise ValueError("no undo for this one")

    @tool(effect=Effect.MUTATE_EXTERNAL, compensate=release, compensate_input=broken)
    def hold_bad(room: str) -> str:
        return "held"

    @tool(effect=Effect.MUTATE_EXTERNAL, compensate=release)
    def hold(room: str) -> str:
        return "held"

    tools = [hold_bad, hold, release]
    crashed = make_runtime(tools=tools, clock=clock)
    for saga_id, name in (("a-broken", "hold_bad"), ("b-fine", "hold")):
        scope = crashed.saga(saga_id, lease=5)
        scope.__enter__()
        scope.call(name, {"room": saga_id})  # the worker dies here: no __exit__
    clock.advance(10)
    recovering = make_runtime(tools=tools, clock=clock)
    assert sorted(recovering.recover_sagas()) == ["a-broken", "b-fine"]
    states = {s.saga_id: (s.state, s.error) for s in recovering.sagas()}
    assert states["b-fine"] == ("compensated", None)
    assert states["a-broken"][0] == "needs_operator"
    assert "ValueError: no undo for this one" in (states["a-broken"][1] or "")
    assert undone == ["b-fine"]
