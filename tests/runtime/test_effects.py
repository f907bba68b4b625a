"""Effects: a tool declares one; reads run every time, mutations once, and an irreversible
tool needs a rule. On every store, sync and async."""

from __future__ import annotations

import pytest

import dar
from dar import (
    Allow,
    ConfigurationError,
    Effect,
    Result,
    Runtime,
    Status,
    rule,
    tool,
)
from tests.support.calls import Calls, MakeRuntime, make_tool, statuses


def test_effect_is_required() -> None:
    with pytest.raises(TypeError, match="effect"):
        tool()(lambda: None)  # type: ignore[call-arg]
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


def test_result_shape() -> None:
    r = Result(Status.CACHED, output=1)
    assert r.ok and r.status == "cached" and str(r.status) == "cached"


@tool(effect=Effect.IRREVERSIBLE)
def confirm_payment(order_id: str) -> str:
    return order_id


def test_irreversible_tool_without_a_rule_fails_at_start_up() -> None:
    with pytest.raises(ConfigurationError, match="irreversible but no rule"):
        Runtime("sqlite://:memory:", tools=[confirm_payment])
    guard = rule(applies_to="confirm_payment", name="guard")(lambda i, c: True)
    rt = Runtime("sqlite://:memory:", rules=[guard])
    rt.add_tool(confirm_payment)
    with pytest.raises(ConfigurationError, match="irreversible but no rule"):
        rt.remove_rule("guard")
    assert [r.name for r in rt.rules] == ["guard"]  # refused: the rule stays
    with pytest.raises(ConfigurationError, match="already registered"):
        rt.add_tool(confirm_payment)
    assert [t.name for t in rt.tools] == ["confirm_payment"]
    rt.close()
