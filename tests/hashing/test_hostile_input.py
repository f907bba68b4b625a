"""Arbitrary Python objects at the boundary: a clear refusal or a correct result, never a
crash of the interpreter (nested, cyclic, huge, non-JSON, lone surrogates, big ints)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import dar
from dar import CanonicalizationError, Effect, Runtime, Status, tool

any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | any_text
    | st.binary(max_size=8)
    | st.complex_numbers()
    | st.decimals()
    | st.datetimes()
    | st.just(object())
    | st.just(Ellipsis)
    | st.just(math.nan)
)
keys = any_text | st.integers() | st.tuples(st.integers()) | st.none() | st.booleans()


def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(keys, inner, max_size=5)
        | st.sets(st.integers(), max_size=3)
        | st.frozensets(st.text(), max_size=3)
    )


values = st.recursive(scalars, containers, max_leaves=30)


@st.composite
def hostile(draw: st.DrawFn) -> Any:
    value = draw(values)
    shape = draw(st.sampled_from(["plain", "deep", "cyclic", "huge-int"]))
    if shape == "deep":
        for _ in range(draw(st.integers(100, 3000))):
            value = [value] if draw(st.booleans()) else {"k": value}
    elif shape == "cyclic":
        box: list[Any] = [value]
        box.append({"self": box})
        value = box
    elif shape == "huge-int":
        value = {"n": draw(st.integers(2**53, 2**4000)) * draw(st.sampled_from([1, -1]))}
    return value


@given(hostile())
def test_canonical_json_refuses_or_round_trips(value: Any) -> None:
    try:
        out = dar.canonical_json(value)
    except CanonicalizationError as exc:
        assert exc.path.startswith("$") and str(exc).startswith(f"at {exc.path}: ")
        return
    # Accepted: it must be canonical JSON that re-canonicalizes to itself.
    assert dar.canonical_json_from_text(out) == out
    assert json.loads(out) is not None or out == b"null"


@given(hostile())
def test_execute_refuses_or_runs(value: Any) -> None:
    @tool(effect=Effect.MUTATE_LOCAL)
    def echo(**kwargs: Any) -> str:
        return "ran"

    rt = Runtime("sqlite://:memory:")
    res = rt.execute(echo, value if isinstance(value, dict) else {"x": value})
    assert res.status in (Status.REJECTED, Status.EXECUTED, Status.FAILED)
    if res.status == Status.REJECTED:
        (ev,) = rt.events()
        assert ev.status == "rejected" and res.reason and res.reason.startswith("at $")
    rt.close()


def test_known_hostile_values() -> None:
    for value in (decimal.Decimal("1.5"), dt.datetime(2026, 1, 1), 1j, b"x", {1, 2}):
        try:
            dar.canonical_json({"v": value})
        except CanonicalizationError as exc:
            assert exc.path == "$.v"
        else:
            raise AssertionError(f"{value!r} was accepted")
