"""The object walker's cache of key sets (`rust/shapes.rs`) never changes a byte of output.

Dicts whose keys are the same `str` objects as a key set seen before skip the sort and reuse
the written names. These tests build such dicts on purpose (a pool of key objects reused in
many dicts, keys freed and their memory reused, more key sets than the cache holds, errors
inside a cached dict) and compare against the rfc8785 package and against the uncached walk
(`default=` turns the cache off).
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

import dar
from dar import CanonicalizationError, canonical_json


def fresh(text: str) -> str:
    """A new str object equal to `text` (not the interned one), for keys longer than 1."""
    assert len(text) > 1
    return "".join([text[:1], text[1:]])


def uncached(value: Any) -> bytes:
    return canonical_json(value, default=lambda o: pytest.fail(f"default called on {o!r}"))


# A pool of key objects shared by many dicts, as literals, pydantic dumps and json.loads give.
POOL = [fresh(k) for k in ["order_id", "sku", "qty", "€uro", "😀!", "\ue000x", "ab", 'quote"']]

keys = st.sampled_from(POOL)
leaves = (
    st.none()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=30,
)


@given(st.lists(st.dictionaries(keys, values, max_size=6), min_size=1, max_size=8))
def test_shared_key_objects_hash_as_the_oracle_says(docs: list[dict[str, Any]]) -> None:
    for _ in range(3):  # a key set is cached on its second sighting and used on the third
        assert canonical_json(docs) == rfc8785.dumps(docs) == uncached(docs)


def test_same_keys_in_another_insertion_order() -> None:
    a, b, c = fresh("alpha"), fresh("beta"), fresh("gamma")
    for _ in range(3):
        assert canonical_json({a: 1, b: 2, c: 3}) == b'{"alpha":1,"beta":2,"gamma":3}'
        assert canonical_json({c: 3, a: 1, b: 2}) == b'{"alpha":1,"beta":2,"gamma":3}'
        assert canonical_json({c: 3, a: 1}) == b'{"alpha":1,"gamma":3}'


def test_freed_keys_whose_memory_is_reused() -> None:
    for i in range(3000):
        d: dict[str, Any] = {fresh(f"k{i % 7}"): i, fresh(f"v{i % 5}"): [i]}
        expected = rfc8785.dumps(d)
        assert canonical_json(d) == expected
        assert canonical_json(d) == expected
        del d


def test_more_key_sets_than_the_cache_holds_nested_in_one_that_is_cached() -> None:
    outer_a, outer_b = fresh("inner"), fresh("nth")
    docs: list[dict[str, Any]] = [
        {outer_a: {fresh(f"x{i}"): i, fresh(f"y{i}"): -i}, outer_b: i} for i in range(5000)
    ]
    for _ in range(3):
        assert canonical_json(docs) == rfc8785.dumps(docs)


def test_an_error_inside_a_cached_dict_names_its_path() -> None:
    price = fresh("price")
    good = {price: 1.5}
    canonical_json([good, good, good])
    with pytest.raises(CanonicalizationError) as info:
        canonical_json([good, {price: float("nan")}])
    assert info.value.path == "$[1].price"


def test_str_subclass_keys_are_never_cached() -> None:
    class Loose(str):
        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return 0

    twins = {Loose("a"): 1}
    twins[Loose("b")] = 2  # equal by __eq__, so it replaced the value, not the key
    assert canonical_json(twins) == canonical_json(twins) == b'{"a":2}'


def test_the_cache_holds_a_bounded_number_of_keys() -> None:
    key = fresh("pinned")
    base = sys.getrefcount(key)
    doc = {key: 1}
    del doc
    for _ in range(2):
        dar.canonical_json({key: 1})
    assert sys.getrefcount(key) == base + 1  # the cached key set holds it
    # Enough other key sets to take every slot (kept alive, so each key has its own address).
    others = [{fresh(f"o{i}"): 1} for i in range(20_000)]
    for other in others:
        canonical_json(other)
        canonical_json(other)
    assert sys.getrefcount(key) == base


def test_long_names_are_never_pinned() -> None:
    long, short = fresh("k" * 100_000), fresh("id")
    doc = {long: 1, short: 2}
    base = sys.getrefcount(long), sys.getrefcount(short)
    for _ in range(3):
        assert canonical_json(doc) == rfc8785.dumps(doc)
    assert (sys.getrefcount(long), sys.getrefcount(short)) == base
    small = {fresh("k" * 100): 1, short: 2}
    before = sys.getrefcount(short)
    for _ in range(3):
        canonical_json(small)
    assert sys.getrefcount(short) == before + 1  # a short key set is cached
