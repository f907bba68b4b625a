"""The input a handler runs on: canonical, immutable, the one that was hashed, judged and
logged; an input with no canonical form is refused before anything runs."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import dar
from dar import (
    ConfigurationError,
    Effect,
    Runtime,
    Status,
    rule,
    tool,
)
from dar.core.ops import GetClaim
from tests.support.calls import Calls, MakeRuntime, make_tool


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


def test_a_rule_that_mutates_the_input_cannot_change_what_the_handler_runs_on(
    make_runtime: MakeRuntime,
) -> None:
    """Found by the airtight review: the handler can run on another input than the one hashed,
    judged and logged."""
    seen: list[dict[str, Any]] = []

    @tool(effect=Effect.MUTATE_EXTERNAL)
    def transfer(to: str, amount: int, meta: dict[str, Any]) -> dict[str, Any]:
        seen.append({"to": to, "amount": amount, "meta": meta})
        return {"sent": amount, "to": to}

    @rule(applies_to="transfer")
    def meddling(inp: dict[str, Any], ctx: Any) -> bool:
        # A careless (or hostile) rule normalises the input in place. A read-only view
        # refuses the writes (TypeError); a copy absorbs them. Either way they must not
        # reach the handler.
        for write in (
            lambda: inp.__setitem__("to", inp["to"].strip().replace("alice", "mallory")),
            lambda: inp.__setitem__("amount", 1_000_000),
            lambda: inp["meta"].__setitem__("note", "rewritten"),
            lambda: inp["meta"]["tags"].append("injected"),
        ):
            with contextlib.suppress(TypeError):
                write()
        return True

    rt = make_runtime(rules=[meddling])
    original = {"to": " alice ", "amount": 5, "meta": {"note": "rent", "tags": ["a"]}}
    expected = copy.deepcopy(original)
    res = rt.execute(transfer, original, correlation_id="i1")
    assert res.status == Status.EXECUTED
    assert seen == [expected], "the handler ran on an input the rule rewrote"
    executed = rt.events(correlation_id="i1", status="executed")[0]
    assert executed.input == seen[0], "the log says one input, the handler ran another"


def test_a_lying_dict_subclass_runs_the_handler_on_what_was_hashed(
    make_runtime: MakeRuntime,
) -> None:
    """Found by the airtight review: a hostile `dict` subclass could make the handler run on other
    values than were hashed."""

    seen: list[dict[str, Any]] = []

    @tool(effect=Effect.MUTATE_EXTERNAL)
    def transfer(to: str, amount: int) -> dict[str, Any]:
        seen.append({"to": to, "amount": amount})
        return {"to": to}

    class Lying(dict):  # type: ignore[type-arg]
        def __getitem__(self, k: str) -> Any:
            return "mallory" if k == "to" else super().__getitem__(k)

        def keys(self) -> Any:
            return ["to", "amount"]

        def items(self) -> Any:
            return [("to", "mallory"), ("amount", 999)]

        def __iter__(self) -> Iterator[str]:
            return iter(["to", "amount"])

    rt = make_runtime()
    res = rt.execute(transfer, Lying(to="alice", amount=5), correlation_id="i1b")
    if res.status == Status.REJECTED:  # refusing such an input outright is also airtight
        assert seen == []
        return
    assert res.status == Status.EXECUTED
    assert res.input_hash == dar.input_hash({"to": "alice", "amount": 5})
    assert seen == [{"to": "alice", "amount": 5}], "handler saw other values than were hashed"
    assert rt.events(correlation_id="i1b", status="executed")[0].input == seen[0]


def test_a_tool_name_no_log_can_store_is_a_configuration_error_naming_it() -> None:
    # Python's "type name must not contain null characters" once came out instead.
    for name in ("ship\x00it", "\x00", "ship\ud800"):
        with pytest.raises(ConfigurationError, match="tool name") as caught:
            tool(name, effect=Effect.READ)(lambda: 1)
        assert repr(name) in str(caught.value)


def test_bad_correlation_ids_are_refused_before_anything_is_written(
    make_runtime: Callable[..., Runtime],
) -> None:
    # On Postgres these once escaped as DataError / ProgramLimitExceeded.
    @tool(effect=Effect.MUTATE_LOCAL)
    def note(text: str) -> str:
        return text

    rt = make_runtime(tools=[note])
    for cid in ("a\x00b", "x" * 3000):
        with pytest.raises(ConfigurationError, match="correlation id"):
            rt.call("note", {"text": "t"}, correlation_id=cid)
        with pytest.raises(ConfigurationError, match="correlation id"):
            rt.execute(note, {"text": "t"}, correlation_id=cid)
    assert rt.events() == []


def test_a_tool_name_with_nul_from_a_model_is_refused_and_logged(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime()
    res = rt.call("a\x00b", {})
    assert res.status == Status.REJECTED and "unknown tool" in (res.reason or "")
    (row,) = rt.events()
    assert row.status == "rejected" and "\x00" not in row.tool_name


def test_a_nul_character_is_refused_with_its_path(make_runtime: Callable[..., Runtime]) -> None:
    @tool(effect=Effect.MUTATE_LOCAL)
    def echo(**kwargs: Any) -> str:
        return "ran"

    rt = make_runtime()
    res = rt.execute(echo, {"a": [1, {"b": "x\x00"}]})
    assert res.status == Status.REJECTED
    assert (res.reason or "").startswith("at $.a[1].b: the input contains a NUL character")
