"""The runtime's semantics, one rule per test, on every store."""

from __future__ import annotations

import inspect
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import dar
from dar import (
    Allow,
    ConfigurationError,
    Deny,
    Effect,
    Reconciled,
    Result,
    RuleContext,
    Runtime,
    Status,
    rule,
    tool,
)
from dar.core.ops import GetClaim, Resolve
from dar.core.rows import resolved_row
from dar.records import NewEvent

from tests.conftest import Clock, execute_sql


def _run_sync(coro: Any) -> Any:
    """Run a coroutine that never suspends (it awaits nothing on a sync runtime)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the check suspended")


def ev_of(rt: Runtime) -> NewEvent:
    """Any row to hand a store operation that must fail before writing it."""
    e = rt.events()[0]
    return NewEvent(e.event_id, e.tool_name, e.effect, e.status, 0.0)


MakeRuntime = Callable[..., Runtime]


class Calls:
    """Counts handler executions per input."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.count.values())


def make_tool(effect: Effect, calls: Calls, **kwargs: Any) -> Any:
    name = kwargs.pop("name", f"t_{effect.name.lower()}")

    @tool(name=name, effect=effect, **kwargs)
    def handler(x: Any = None, fail: bool = False) -> dict[str, Any]:
        calls.count[repr(x)] += 1
        if fail:
            raise RuntimeError(f"boom {x}")
        return {"x": x, "n": calls.count[repr(x)]}

    return handler


allow_all = rule(applies_to="*", name="allow_all")(lambda inp, ctx: True)


def abandon_claim(
    rt: Runtime, t: Any, inp: dict[str, Any], correlation_id: str | None = None
) -> None:
    """Take the claim as a worker would, then 'die' before the outcome is recorded."""
    from dar.core.decide import CallSpec, decide_call
    from dar.core.ops import CallHandler

    spec = CallSpec(
        tool=t,
        input=inp,
        rules=rt.rules,
        owner="dead-worker",
        clock=rt.clock,
        wait=0,
        events_reader=rt.events,
        correlation_id=correlation_id,
    )
    gen = decide_call(spec)
    op = next(gen)
    while not isinstance(op, CallHandler):
        op = gen.send(rt._run(op))
    gen.close()


def statuses(rt: Runtime, **filters: Any) -> list[str]:
    return [e.status for e in rt.events(**filters)]


# --- effects ------------------------------------------------------------------------------------


def test_effect_is_required() -> None:
    with pytest.raises(TypeError, match="effect"):
        tool()(lambda: None)  # type: ignore[call-overload]
    with pytest.raises(ValueError):
        tool(effect="teleport")(lambda: None)


def test_read_executes_every_time_and_is_logged(make_runtime: MakeRuntime) -> None:
    calls = Calls()
    t = make_tool(Effect.READ, calls)
    rt = make_runtime()
    results = [rt.execute(t, {"x": 1}) for _ in range(3)]
    assert [r.status for r in results] == [Status.EXECUTED] * 3
    assert calls.total == 3
    assert all(r.key is None for r in results)
    assert statuses(rt) == ["executed"] * 3


@pytest.mark.parametrize("effect", [Effect.MUTATE_LOCAL, Effect.MUTATE_EXTERNAL])
def test_mutations_execute_once_and_replay_the_record(
    make_runtime: MakeRuntime, effect: Effect
) -> None:
    calls = Calls()
    t = make_tool(effect, calls)
    rt = make_runtime()
    first = rt.execute(t, {"x": [1, 2]})
    again = [rt.execute(t, {"x": [1, 2]}) for _ in range(3)]
    assert first.status == "executed" and first.output == {"x": [1, 2], "n": 1}
    assert all(r.status == Status.CACHED and r.output == first.output for r in again)
    assert calls.total == 1
    assert first.key == f"{t.name}:{first.input_hash}" == again[0].key
    assert first.input_hash == dar.input_hash({"x": [1, 2]})
    assert statuses(rt) == ["started", "executed", "cached", "cached", "cached"]
    # Another input is another key.
    assert rt.execute(t, {"x": 3}).status == Status.EXECUTED


def test_irreversible_needs_a_rule(make_runtime: MakeRuntime) -> None:
    calls = Calls()
    t = make_tool(Effect.IRREVERSIBLE, calls)
    rt = make_runtime()
    with pytest.raises(ConfigurationError, match="no rule applies"):
        rt.execute(t, {"x": 1})
    assert calls.total == 0 and rt.events() == []
    rt.add_rule(rule(applies_to=Effect.IRREVERSIBLE, name="ok")(lambda i, c: Allow()))
    assert rt.execute(t, {"x": 1}).status == Status.EXECUTED
    assert rt.execute(t, {"x": 1}).status == Status.CACHED
    assert calls.total == 1


def test_key_function_and_explicit_key(make_runtime: MakeRuntime) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_EXTERNAL, calls, key=lambda i: f"order:{i['x']}")
    rt = make_runtime()
    # A given key is scoped to its tool and stored as a salted hash (issue 11, items 2-4).
    seven = rt.execute(t, {"x": 7}).key
    assert seven is not None and seven.startswith(f"{t.name}:key:") and "order:7" not in seven
    assert rt.execute(t, {"x": 7}).key == seven
    custom = rt.execute(t, {"x": 8}, key="custom").key
    assert custom is not None and custom.startswith(f"{t.name}:key:") and custom != seven
    assert rt.execute(t, {"x": 8}, key="custom").status == Status.CACHED


def test_failing_key_function_refuses(make_runtime: MakeRuntime) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_EXTERNAL, calls, key=lambda i: i["missing"])
    res = make_runtime().execute(t, {"x": 1})
    assert res.status == Status.REJECTED and "KeyError" in (res.reason or "")
    assert calls.total == 0


# --- order: cache before rules ------------------------------------------------------------------


def test_a_replay_is_not_judged_again(make_runtime: MakeRuntime) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_EXTERNAL, calls)
    rt = make_runtime()
    assert rt.execute(t, {"x": 1}).status == Status.EXECUTED
    deny_all = rule(applies_to="*", name="deny_all")(lambda i, c: Deny("closed"))
    rt.add_rule(deny_all)
    assert rt.execute(t, {"x": 1}).status == Status.CACHED  # the effect already happened
    res = rt.execute(t, {"x": 2})
    assert (res.status, res.rule, res.reason) == (Status.REJECTED, "deny_all", "closed")
    rt.remove_rule("deny_all")
    assert rt.execute(t, {"x": 2}).status == Status.EXECUTED
    with pytest.raises(KeyError):
        rt.remove_rule(deny_all)


# --- windows ------------------------------------------------------------------------------------


def test_window_expires(make_runtime: MakeRuntime, clock: Clock) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_EXTERNAL, calls, window=60)
    rt = make_runtime(clock=clock)
    assert rt.execute(t, {"x": 1}).status == Status.EXECUTED
    clock.advance(59)
    assert rt.execute(t, {"x": 1}).status == Status.CACHED
    clock.advance(2)
    again = rt.execute(t, {"x": 1})
    assert again.status == Status.EXECUTED and again.output["n"] == 2
    assert rt.execute(t, {"x": 1}).status == Status.CACHED
    assert calls.total == 2


def test_window_none_means_forever(make_runtime: MakeRuntime, clock: Clock) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_LOCAL, calls, window=None)
    rt = make_runtime(clock=clock)
    rt.execute(t, {"x": 1})
    clock.advance(10 * 365 * 86400)
    assert rt.execute(t, {"x": 1}).status == Status.CACHED


@pytest.mark.parametrize(
    ("effect", "window"),
    [
        (Effect.MUTATE_LOCAL, 86400.0),
        (Effect.MUTATE_EXTERNAL, 86400.0),
        (Effect.IRREVERSIBLE, None),
        (Effect.READ, None),
    ],
)
def test_default_window_is_a_day_for_mutations_and_forever_for_irreversible(
    make_runtime: MakeRuntime, clock: Clock, effect: Effect, window: float | None
) -> None:
    calls = Calls()
    t = make_tool(effect, calls)
    assert t.window == window
    if effect is Effect.READ:
        return
    rt = make_runtime(clock=clock, rules=[allow_all])
    rt.execute(t, {"x": 1})
    clock.advance(86400 - 1)
    assert rt.execute(t, {"x": 1}).status == Status.CACHED
    clock.advance(2)
    expected = Status.CACHED if window is None else Status.EXECUTED
    assert rt.execute(t, {"x": 1}).status == expected


# --- conflicts ----------------------------------------------------------------------------------


def test_same_key_different_input_conflicts(make_runtime: MakeRuntime) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_EXTERNAL, calls)
    rt = make_runtime()
    first = rt.execute(t, {"x": 1}, key="k")
    res = rt.execute(t, {"x": 2}, key="k")
    assert res.status == Status.CONFLICT
    assert calls.total == 1
    conflict = rt.events(status="conflict")[0]
    assert conflict.input_hash == dar.input_hash({"x": 2})
    assert first.input_hash is not None
    # The reason names what differs, by path, not two hashes; the model reads it too.
    assert "($.x differ)" in (conflict.rejection_reason or "")
    assert "$.x differ" in res.for_model().text and res.for_model().is_error


def test_after_the_window_a_key_may_take_new_input(make_runtime: MakeRuntime, clock: Clock) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_EXTERNAL, calls, window=10)
    rt = make_runtime(clock=clock)
    rt.execute(t, {"x": 1}, key="k")
    clock.advance(11)
    assert rt.execute(t, {"x": 2}, key="k").status == Status.EXECUTED


# --- failures -----------------------------------------------------------------------------------


def test_failure_is_recorded_and_released(make_runtime: MakeRuntime) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_EXTERNAL, calls)
    rt = make_runtime()
    res = rt.execute(t, {"x": 1, "fail": True})
    assert res.status == Status.FAILED and res.error == "RuntimeError: boom 1"
    assert rt.execute(t, {"x": 1, "fail": True}).status == Status.FAILED
    assert calls.total == 2  # released: the retry ran again
    failed = rt.events(status="failed")
    assert len(failed) == 2 and failed[1].attempt == 2


def test_kept_failures_answer_from_the_record(make_runtime: MakeRuntime, clock: Clock) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_EXTERNAL, calls, keep_failures=True, window=30)
    rt = make_runtime(clock=clock)
    assert rt.execute(t, {"x": 1, "fail": True}).status == Status.FAILED
    res = rt.execute(t, {"x": 1, "fail": True})
    assert res.status == Status.FAILED and res.error == "RuntimeError: boom 1"
    assert calls.total == 1
    clock.advance(31)
    rt.execute(t, {"x": 1, "fail": True})
    assert calls.total == 2


def test_output_that_is_not_json_is_still_recorded_as_done(make_runtime: MakeRuntime) -> None:
    runs = []

    lock = threading.Lock()

    @tool(effect=Effect.MUTATE_EXTERNAL)
    def returns_a_lock() -> Any:
        runs.append(1)
        return {"lock": lock}

    rt = make_runtime()
    first = rt.execute(returns_a_lock, {})
    assert first.status == Status.EXECUTED and first.output == {"lock": lock}
    assert "output not recorded" in (first.error or "")
    again = rt.execute(returns_a_lock, {})
    assert again.status == Status.CACHED and again.output is None
    # Never a silent None: the answer from the record says why it has no output.
    assert "output not recorded" in (again.reason or "")
    assert "could not be recorded" in again.for_model().text
    assert len(runs) == 1


# --- rules --------------------------------------------------------------------------------------


def test_rules_refuse_with_reason(make_runtime: MakeRuntime) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_EXTERNAL, calls, name="dispatch_order")

    @rule(applies_to="dispatch_order")
    def courier_must_cover_zone(inp: dict[str, Any], ctx: RuleContext) -> Allow | Deny:
        return Deny("no courier covers yunguyo") if inp["x"] == "yunguyo" else Allow()

    rt = make_runtime(rules=[courier_must_cover_zone])
    res = rt.execute(t, {"x": "yunguyo"}, correlation_id="s")
    assert res.status == "rejected"  # a str enum
    assert (res.rule, res.reason) == ("courier_must_cover_zone", "no courier covers yunguyo")
    assert calls.total == 0
    (ev,) = rt.events(correlation_id="s")
    assert (ev.status, ev.rule_name, ev.rejection_reason) == (
        "rejected",
        "courier_must_cover_zone",
        "no courier covers yunguyo",
    )
    assert ev.input == {"x": "yunguyo"}
    assert rt.execute(t, {"x": "juliaca"}).status == Status.EXECUTED


@pytest.mark.parametrize(
    ("check", "fragment"),
    [
        (lambda i, c: False, "returned False"),
        (lambda i, c: 1 / 0, "raised ZeroDivisionError"),
        (lambda i, c: "yes", "returned str"),
        (lambda i, c: time.sleep(0.05), "timed out"),
    ],
    ids=["false", "raises", "nonsense", "timeout"],
)
def test_rules_fail_closed(make_runtime: MakeRuntime, check: Any, fragment: str) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_LOCAL, calls)
    r = rule(applies_to="*", name="picky", timeout=0.01)(check)
    res = make_runtime(rules=[r]).execute(t, {"x": 1})
    assert res.status == Status.REJECTED and res.rule == "picky"
    assert fragment in (res.reason or "")
    assert calls.total == 0


def test_rule_targets(make_runtime: MakeRuntime) -> None:
    calls = Calls()
    a = make_tool(Effect.READ, calls, name="a")
    b = make_tool(Effect.MUTATE_LOCAL, calls, name="b")
    c = make_tool(Effect.MUTATE_EXTERNAL, calls, name="c")

    def deny(name: str, target: Any) -> Any:
        return rule(applies_to=target, name=name)(lambda i, ctx: Deny(name))

    for target, refused in [
        ("a", {"a"}),
        (["a", "c"], {"a", "c"}),
        ("*", {"a", "b", "c"}),
        (Effect.MUTATE_LOCAL, {"b"}),
    ]:
        rt = make_runtime(rules=[deny("r", target)])
        got = {
            t.name
            for t in (a, b, c)
            if rt.execute(t, {"x": repr(target)}).status == Status.REJECTED
        }
        assert got == refused, target


def test_rule_context_reads_the_log(make_runtime: MakeRuntime, runtime_kind: str) -> None:
    calls = Calls()
    send = make_tool(Effect.MUTATE_EXTERNAL, calls, name="send_message")
    seen: list[tuple[str, Effect, str | None]] = []

    @rule(applies_to="send_message")
    async def at_most_two_per_session(inp: dict[str, Any], ctx: RuleContext) -> bool:
        seen.append((ctx.tool, ctx.effect, ctx.correlation_id))
        sent = ctx.events(correlation_id=ctx.correlation_id, tool=ctx.tool, status="executed")
        if inspect.isawaitable(sent):  # on an AsyncRuntime, the log is read awaited
            sent = await sent
        return len(sent) < 2

    if runtime_kind == "sync":  # a sync runtime takes a sync check
        check = at_most_two_per_session.check
        at_most_two_per_session = rule(applies_to="send_message", name="at_most_two")(
            lambda inp, ctx: _run_sync(check(inp, ctx))
        )

    rt = make_runtime(rules=[at_most_two_per_session])
    got = [rt.execute(send, {"x": i}, correlation_id="s1").status for i in range(3)]
    assert got == [Status.EXECUTED, Status.EXECUTED, Status.REJECTED]
    assert seen[0] == ("send_message", Effect.MUTATE_EXTERNAL, "s1")


def test_rules_must_be_rules_with_unique_names(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(rules=[allow_all])
    with pytest.raises(ConfigurationError):
        rt.add_rule(allow_all)
    with pytest.raises(TypeError):
        rt.add_rule(lambda i, c: True)  # type: ignore[arg-type]


# --- bad input ----------------------------------------------------------------------------------


def deep(n: int) -> list[Any]:
    v: list[Any] = []
    for _ in range(n):
        v = [v]
    return v


@pytest.mark.parametrize(
    ("inp", "path"),
    [
        ({"amount": float("nan")}, "$.amount"),
        ({"tags": {"a", "b"}}, "$.tags"),
        ({"x": deep(10_000)}, None),
        ({"text": "hi \ud800"}, "$.text"),
        ({"m": {1: "one"}}, "$.m"),
        (["not", "an", "object"], "$"),
        ({"id": 2**64}, "$.id"),
    ],
    ids=["nan", "set", "10000-deep", "lone-surrogate", "int-key", "list", "big-int"],
)
def test_bad_input_is_refused_before_anything_runs(
    make_runtime: MakeRuntime, inp: Any, path: str | None
) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_EXTERNAL, calls)
    r = rule(applies_to="*", name="never_called")(lambda i, c: pytest.fail("rule ran"))
    rt = make_runtime(rules=[r])
    res = rt.execute(t, inp, correlation_id="bad")
    assert res.status == Status.REJECTED and res.rule is None
    assert path is None or (res.reason or "").startswith(f"at {path}: ")
    assert calls.total == 0
    (ev,) = rt.events()
    assert (ev.status, ev.rejection_reason, ev.correlation_id) == ("rejected", res.reason, "bad")
    assert isinstance(ev.input["unrepresentable"], str)
    assert ev.idempotency_key is None and ev.input_hash is None
    # Nothing but the refusal: no claim was taken.
    assert rt.store.get_claim(GetClaim(f"{t.name}:x")) is None


# --- nesting ------------------------------------------------------------------------------------


def test_nested_calls_link_to_their_parent(make_runtime: MakeRuntime, runtime_kind: str) -> None:
    rt = make_runtime()

    @tool(effect=Effect.READ)
    def lookup_zone(town: str) -> str:
        return "yunguyo"

    if runtime_kind == "sync":

        @tool(effect=Effect.MUTATE_EXTERNAL)
        def dispatch(order: str) -> dict[str, Any]:
            zone = rt.execute(lookup_zone, {"town": "x"}).output
            return {"order": order, "zone": zone}

    else:  # on an AsyncRuntime, the handler awaits the nested call

        @tool(effect=Effect.MUTATE_EXTERNAL)
        async def dispatch(order: str) -> dict[str, Any]:
            zone = (await rt.art.execute(lookup_zone, {"town": "x"})).output  # type: ignore[attr-defined]
            return {"order": order, "zone": zone}

    res = rt.execute(dispatch, {"order": "o1"}, correlation_id="sess")
    assert res.output == {"order": "o1", "zone": "yunguyo"}
    events = rt.events(correlation_id="sess")
    assert [(e.tool_name, e.status) for e in events] == [
        ("dispatch", "started"),
        ("lookup_zone", "executed"),
        ("dispatch", "executed"),
    ]
    started, child, _ = events
    assert child.parent_event_id == started.event_id
    assert started.parent_event_id is None


# --- the log ------------------------------------------------------------------------------------


def test_event_log_is_append_only(make_runtime: MakeRuntime) -> None:
    calls = Calls()
    rt = make_runtime()
    rt.execute(make_tool(Effect.MUTATE_LOCAL, calls), {"x": 1})
    for sql in (
        "UPDATE agent_tool_events SET status = 'executed'",
        "DELETE FROM agent_tool_events",
    ):
        with pytest.raises(Exception, match="append-only"):
            execute_sql(rt.store, sql)
    assert statuses(rt) == ["started", "executed"]


def test_events_filters(make_runtime: MakeRuntime, clock: Clock) -> None:
    import datetime as dt

    calls = Calls()
    a = make_tool(Effect.READ, calls, name="a")
    b = make_tool(Effect.MUTATE_LOCAL, calls, name="b")
    rt = make_runtime(clock=clock)
    rt.execute(a, {"x": 1}, correlation_id="s1")
    clock.advance(100)
    rt.execute(b, {"x": 1}, correlation_id="s2")
    assert [e.tool_name for e in rt.events(correlation_id="s2")] == ["b", "b"]
    assert len(rt.events(tool="a")) == 1
    assert len(rt.events(status="started")) == 1
    since = dt.datetime.fromtimestamp(clock.now - 50, tz=dt.timezone.utc)
    assert {e.tool_name for e in rt.events(since=since)} == {"b"}
    assert len(rt.events(limit=2)) == 2
    ev = rt.events(tool="b", status="executed")[0]
    assert ev.created_at.tzinfo is not None and ev.duration_ms is not None
    assert ev.idempotency_key == f"b:{dar.input_hash({'x': 1})}"


def test_wait_runs_out_as_in_progress(make_runtime: MakeRuntime, clock: Clock) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_EXTERNAL, calls, lease=60)
    rt = make_runtime(clock=clock, wait=0.02)
    # Another worker holds the key, still within its lease.
    abandon_claim(rt, t, {"x": 1})
    # Our call waits for it, then gives up.
    res = rt.execute(t, {"x": 1})
    assert res.status == Status.IN_PROGRESS
    assert calls.total == 0
    assert statuses(rt)[-1] == "in_progress"


def test_result_shape() -> None:
    r = Result(Status.CACHED, output=1)
    assert r.ok and r.status == "cached" and str(r.status) == "cached"


# --- crash recovery (in-process: a claim whose lease ran out with no outcome) -----------------


def test_crashed_local_calls_run_again_after_the_lease(
    make_runtime: MakeRuntime, clock: Clock
) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_LOCAL, calls, lease=30)
    rt = make_runtime(clock=clock, wait=0)
    abandon_claim(rt, t, {"x": 1})
    assert rt.execute(t, {"x": 1}).status == Status.IN_PROGRESS
    clock.advance(31)
    res = rt.execute(t, {"x": 1})
    assert res.status == Status.EXECUTED and calls.total == 1
    assert rt.events(status="started")[-1].attempt == 2


@pytest.mark.parametrize("effect", [Effect.MUTATE_EXTERNAL, Effect.IRREVERSIBLE])
def test_crashed_external_calls_become_indeterminate(
    make_runtime: MakeRuntime, clock: Clock, effect: Effect
) -> None:
    calls = Calls()
    t = make_tool(effect, calls, lease=30)
    rt = make_runtime(clock=clock, wait=0, rules=[allow_all])
    abandon_claim(rt, t, {"x": 1})
    clock.advance(31)
    res = rt.execute(t, {"x": 1})
    assert res.status == Status.INDETERMINATE
    assert rt.execute(t, {"x": 1}).status == Status.INDETERMINATE
    assert calls.total == 0
    key = res.key
    assert key is not None and rt.store.get_claim(GetClaim(key)).state == "indeterminate"  # type: ignore[union-attr]


def resolve(rt: Runtime, key: str, executed: bool, output: Any = None) -> None:
    claim = rt.store.get_claim(GetClaim(key))
    assert claim is not None
    out = None if output is None else dar.canonical_json(output).decode()
    ev = resolved_row(claim, executed, out, None, rt.clock())
    rt.store.resolve(Resolve(key, executed, out, rt.clock(), ev))


def test_operator_resolves_indeterminate_calls(make_runtime: MakeRuntime, clock: Clock) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_EXTERNAL, calls, lease=30)
    rt = make_runtime(clock=clock, wait=0)
    abandon_claim(rt, t, {"x": 1})
    abandon_claim(rt, t, {"x": 2})
    clock.advance(31)
    k1 = rt.execute(t, {"x": 1}).key
    k2 = rt.execute(t, {"x": 2}).key
    assert k1 and k2
    resolve(rt, k1, executed=True, output={"shipped": True})
    assert rt.execute(t, {"x": 1}).output == {"shipped": True}
    resolve(rt, k2, executed=False)
    assert rt.execute(t, {"x": 2}).status == Status.EXECUTED
    assert calls.total == 1
    with pytest.raises(ValueError):
        resolve(rt, k1, executed=False)  # done is done
    assert rt.store.get_claim(GetClaim("nope")) is None
    with pytest.raises(KeyError):
        rt.store.resolve(Resolve("nope", True, None, 0.0, ev_of(rt)))


def test_reconcile_decides_after_a_crash(make_runtime: MakeRuntime, clock: Clock) -> None:
    calls = Calls()
    shipped = {"1": {"tracking": "T1"}}

    def reconcile(inp: dict[str, Any]) -> Reconciled:
        found = shipped.get(str(inp["x"]))
        return Reconciled(True, found) if found else Reconciled(False)

    t = make_tool(Effect.MUTATE_EXTERNAL, calls, lease=30, reconcile=reconcile)
    rt = make_runtime(clock=clock, wait=0)
    abandon_claim(rt, t, {"x": 1})
    abandon_claim(rt, t, {"x": 2})
    clock.advance(31)
    r1 = rt.execute(t, {"x": 1})
    assert (r1.status, r1.output, r1.extra) == (
        Status.CACHED,
        {"tracking": "T1"},
        {"reconciled": True},
    )
    assert rt.execute(t, {"x": 1}).output == {"tracking": "T1"}
    r2 = rt.execute(t, {"x": 2})
    assert r2.status == Status.EXECUTED and calls.total == 1


def test_reconcile_that_fails_leaves_it_indeterminate(
    make_runtime: MakeRuntime, clock: Clock
) -> None:
    calls = Calls()
    t = make_tool(Effect.IRREVERSIBLE, calls, lease=30, reconcile=lambda inp: 1 / 0)
    rt = make_runtime(clock=clock, wait=0, rules=[allow_all])
    abandon_claim(rt, t, {"x": 1})
    clock.advance(31)
    res = rt.execute(t, {"x": 1})
    assert res.status == Status.INDETERMINATE and "ZeroDivisionError" in (res.error or "")
    assert rt.execute(t, {"x": 1}).status == Status.INDETERMINATE
    assert calls.total == 0
