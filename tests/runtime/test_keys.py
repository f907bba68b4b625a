"""Idempotency keys: how a call's key is made (input hash, key function, explicit key), scoped
by tool and validated; how long it holds (windows); what a second input under a key gets
(conflict); one key however the arguments arrive. On every store, sync and async."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dar
from dar import (
    ConfigurationError,
    Effect,
    Runtime,
    Status,
    tool,
)
from tests.conftest import Clock
from tests.support.calls import Calls, MakeRuntime, allow_all, make_tool


def test_key_function_and_explicit_key(make_runtime: MakeRuntime) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_EXTERNAL, calls, key=lambda i: f"order:{i['x']}")
    rt = make_runtime()
    # A given key is scoped to its tool and stored as a salted hash (found by the airtight review).
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


texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=8)


def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | texts,
    containers,
    max_leaves=8,
)


@tool(effect=Effect.MUTATE_LOCAL)
def anything(**arguments: Any) -> int:
    return len(arguments)


@settings(max_examples=100)
@given(st.dictionaries(texts.filter(bool), json_values, max_size=5), st.randoms())
def test_every_way_arguments_arrive_is_one_hash_and_one_key(
    arguments: dict[str, Any], rnd: Any
) -> None:
    shuffled = list(arguments.items())
    rnd.shuffle(shuffled)
    forms: list[Any] = [
        arguments,  # Anthropic's tool_use.input, Gemini's function_call.args
        json.dumps(arguments),  # OpenAI's arguments string
        json.dumps(dict(shuffled), ensure_ascii=False, indent=1),  # another member order
        json.dumps(dict(shuffled), separators=(",", ":")).encode("utf-8"),
    ]
    with Runtime("sqlite://:memory:", tools=[anything]) as rt:
        results = [rt.call("anything", form) for form in forms]
    assert [r.status for r in results] == [Status.EXECUTED] + [Status.CACHED] * 3
    assert len({r.key for r in results}) == 1
    assert {r.input_hash for r in results} == {dar.input_hash(arguments)}


@pytest.mark.parametrize("how", ["explicit_key", "key_function"])
def test_the_same_key_in_two_tools_runs_both(make_runtime: MakeRuntime, how: str) -> None:
    """Found by the airtight review: keys collide across tools."""
    ran: Counter[str] = Counter()
    keyfn = (lambda i: f"notify:{i['order']}") if how == "key_function" else None

    @tool(effect=Effect.MUTATE_EXTERNAL, key=keyfn)
    def send_email(order: str) -> dict[str, str]:
        ran["email"] += 1
        return {"via": "email"}

    @tool(effect=Effect.MUTATE_EXTERNAL, key=keyfn)
    def send_sms(order: str) -> dict[str, str]:
        ran["sms"] += 1
        return {"via": "sms"}

    rt = make_runtime()
    key: dict[str, Any] = {"key": "notify:A"} if how == "explicit_key" else {}
    email = rt.execute(send_email, {"order": "A"}, **key)
    sms = rt.execute(send_sms, {"order": "A"}, **key)
    assert (email.status, email.output) == (Status.EXECUTED, {"via": "email"})
    assert (sms.status, sms.output) == (Status.EXECUTED, {"via": "sms"}), "answered by send_email"
    assert ran == {"email": 1, "sms": 1}
    assert email.key != sms.key
    # Each is still exactly-once on its own.
    assert rt.execute(send_sms, {"order": "A"}, **key).output == {"via": "sms"}
    assert ran == {"email": 1, "sms": 1}


@pytest.mark.parametrize("bad", [None, 42, {"order": "A"}, ""], ids=repr)
def test_a_key_function_must_return_a_non_empty_str(make_runtime: MakeRuntime, bad: Any) -> None:
    """Found by the airtight review: key functions are trusted blindly."""
    ran: list[str] = []

    @tool(effect=Effect.MUTATE_EXTERNAL, key=lambda i: bad)
    def charge(order: str) -> str:
        ran.append(order)
        return "ok"

    rt = make_runtime()
    res = rt.execute(charge, {"order": "A"}, correlation_id="i3")
    assert res.status == Status.REJECTED, f"key {bad!r} was accepted as {res.key!r}"
    assert "key function" in (res.reason or "")
    assert ran == []
    assert [e.status for e in rt.events(correlation_id="i3")] == ["rejected"]


@pytest.mark.parametrize(
    "kwargs",
    [{"key": 42}, {"key": ""}, {"key": None, "correlation_id": 7}, {"correlation_id": b"s"}],
    ids=["int-key", "empty-key", "int-correlation-id", "bytes-correlation-id"],
)
def test_explicit_keys_and_correlation_ids_must_be_str(
    make_runtime: MakeRuntime, kwargs: dict[str, Any]
) -> None:
    """Found by the airtight review: explicit `key=` and `correlation_id` values were trusted
    blindly too."""
    ran: list[str] = []

    @tool(effect=Effect.MUTATE_EXTERNAL)
    def charge(order: str) -> str:
        ran.append(order)
        return "ok"

    rt = make_runtime()
    with pytest.raises(ConfigurationError):
        rt.execute(charge, {"order": "A"}, **kwargs)
    assert ran == [] and rt.events() == []


@pytest.mark.parametrize("how", ["key_function", "explicit_key"])
def test_a_deploy_that_changes_redact_keeps_the_key(make_runtime: MakeRuntime, how: str) -> None:
    """Found by the airtight review: a deploy that adds `redact=` changes the idempotency key."""
    ran: list[str] = []
    keyfn = (lambda i: f"pay:{i['order']}") if how == "key_function" else None
    explicit: dict[str, Any] = {"key": "pay:A"} if how == "explicit_key" else {}

    def version(redact: Any) -> Any:
        @tool(name="pay", effect=Effect.MUTATE_EXTERNAL, key=keyfn, redact=redact)
        def pay(order: str, card: str, phone: str) -> dict[str, str]:
            ran.append(order)
            return {"paid": order}

        return pay

    inp = {"order": "A", "card": "4111 1111 1111 1111", "phone": "+51 900 111 222"}
    first = make_runtime().execute(version(None), inp, **explicit)
    assert first.status == Status.EXECUTED
    deploys = [["card"], ["phone"], lambda v: v, None]  # add, change, function, remove
    for redact in deploys:
        again = make_runtime().execute(version(redact), inp, **explicit)
        assert again.status == Status.CACHED, f"redact={redact!r} ran the effect again"
    assert ran == ["A"]


def test_an_over_long_key_never_loses_an_outcome(store_url: str) -> None:
    """Found by the airtight review: an over-long key made `execute` raise after the handler ran."""
    import secrets

    ran: list[str] = []

    @tool(effect=Effect.MUTATE_LOCAL)
    def note(n: int) -> str:
        ran.append("note")
        return "ok"

    key = secrets.token_hex(5000)  # 10,000 incompressible characters
    with Runtime(store_url, wait=0.5) as rt:
        first = rt.execute(note, {"n": 1}, key=key)
        again = rt.execute(note, {"n": 1}, key=key)
        assert first.status in (Status.EXECUTED, Status.REJECTED)
        if first.status == Status.EXECUTED:
            assert again.status == Status.CACHED
        assert len(ran) <= 1
