"""Rules: they judge every call that is not answered from the record, refuse with a reason,
fail closed, target tools, read the log, and are registered once by name."""

from __future__ import annotations

import inspect
import time
from typing import Any

import pytest

from dar import (
    Allow,
    ConfigurationError,
    Deny,
    Effect,
    RuleContext,
    Status,
    rule,
    tool,
)
from tests.support.calls import Calls, MakeRuntime, allow_all, make_tool


def _run_sync(coro: Any) -> Any:
    """Run a coroutine that never suspends (it awaits nothing on a sync runtime)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the check suspended")


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


@pytest.mark.parametrize("reason", [{"why": "no"}, 42, None], ids=repr)
def test_a_deny_reason_that_is_not_str_fails_closed(make_runtime: MakeRuntime, reason: Any) -> None:
    """Found by the airtight review: a `Deny(reason)` whose reason is not a str was trusted blindly
    (a dict reason raised a raw `ProgrammingError`)."""
    ran: list[str] = []

    @tool(effect=Effect.MUTATE_EXTERNAL)
    def charge(order: str) -> str:
        ran.append(order)
        return "ok"

    weird = rule(applies_to="*", name="weird_reason")(lambda i, c: Deny(reason))
    rt = make_runtime(rules=[weird])
    res = rt.execute(charge, {"order": "A"}, correlation_id="i3d")
    assert res.status == Status.REJECTED and ran == []
    assert isinstance(res.reason, str) and "weird_reason" in (res.reason + (res.rule or ""))
    assert [e.status for e in rt.events(correlation_id="i3d")] == ["rejected"]
