"""RFC 8785 canonical JSON and input hashing: vectors, an oracle, and every refusal."""

from __future__ import annotations

import enum
import hashlib
import json
import math
import os
import struct
import subprocess
import sys
from collections import OrderedDict, namedtuple
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

import dar
from dar import (
    CanonicalizationError,
    canonical_json,
    canonical_json_from_text,
    input_hash,
    input_hash_from_text,
    input_hashes,
    input_hashes_from_texts,
)
from tests.conftest import DATA

JCS = DATA / "jcs"
SAFE = 2**53 - 1


def double(hex_bits: str) -> float:
    return float(struct.unpack(">d", bytes.fromhex(hex_bits.zfill(16)))[0])


def test_the_module_is_the_build_asked_for() -> None:
    """`make test` runs the per-version build; `make test-abi3` the stable-ABI fallback."""
    v = sys.version_info
    expected = os.environ.get("DAR_EXPECT_BUILD", f"cpython-{v.major}.{v.minor}")
    assert expected == dar._core.BUILD
    assert dar._core.__file__ is not None
    assert ("abi3" in dar._core.__file__) == (expected == "abi3")


# --- the shared vectors ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in (JCS / "input").iterdir()))
def test_vector_documents(name: str) -> None:
    text = (JCS / "input" / name).read_bytes()
    expected = (JCS / "output" / name).read_bytes()
    assert expected == bytes.fromhex(
        (JCS / "outhex" / name.replace(".json", ".txt"))
        .read_text()
        .replace(" ", "")
        .replace("\n", "")
    )
    assert canonical_json(json.loads(text)) == expected
    assert canonical_json_from_text(text) == expected
    assert input_hash_from_text(text) == hashlib.sha256(expected).hexdigest()


def test_es6_number_lines() -> None:
    lines = (JCS / "es6testfile_10000.txt").read_text().splitlines()
    assert len(lines) == 10_000
    values = []
    for line in lines:
        hex_bits, expected = line.split(",")
        values.append((double(hex_bits), expected))
    got = [canonical_json(v).decode() for v, _ in values]
    assert got == [e for _, e in values]
    # The text path parses each number back from its shortest form.
    assert [canonical_json_from_text(e).decode() for _, e in values] == got


def test_appendix_b_table() -> None:
    rows = (JCS / "rfc8785_appendix_b.csv").read_text().splitlines()[1:]
    for row in rows:
        hex_bits, expected, _comment = row.split(",", 2)
        value = double(hex_bits)
        if expected == "ERROR":
            with pytest.raises(CanonicalizationError) as info:
                canonical_json({"n": value})
            assert info.value.path == "$.n"
        else:
            assert canonical_json(value) == expected.encode(), row


# --- properties -----------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-SAFE, SAFE)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(), inner, max_size=6),
    max_leaves=40,
)


@given(json_values)
def test_matches_the_rfc8785_oracle(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


def as_json_number(literal: str) -> int | float:
    """Read an integer literal the way JSON means it: a double, unless it is exactly an int."""
    n = int(literal)
    return n if abs(n) <= SAFE else float(literal)


@given(json_values)
def test_canonical_form_is_a_fixed_point(value: Any) -> None:
    once = canonical_json(value)
    # ECMAScript writes floats in [2**53, 1e21) without an exponent; plain json.loads would
    # read those as Python ints beyond the exact range, which canonical_json refuses.
    assert canonical_json(json.loads(once, parse_int=as_json_number)) == once
    assert canonical_json_from_text(once) == once


def test_large_float_written_as_integer_round_trips() -> None:
    once = canonical_json(1e20)
    assert once == b"100000000000000000000"
    assert canonical_json_from_text(once) == once
    with pytest.raises(CanonicalizationError):
        canonical_json(json.loads(once))  # a Python int of that size is refused, by design


@given(json_values)
def test_hash_is_sha256_of_canonical_bytes(value: Any) -> None:
    digest = hashlib.sha256(canonical_json(value)).hexdigest()
    assert input_hash(value) == digest
    assert input_hashes([value, value]) == [digest, digest]


@given(json_values)
def test_text_path_equals_object_path(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert canonical_json_from_text(text) == canonical_json(value)
    assert canonical_json_from_text(json.dumps(value).encode()) == canonical_json(value)
    assert input_hash_from_text(text) == input_hash(value)


@given(st.dictionaries(st.text(), st.integers(0, 9), min_size=2, max_size=8))
def test_members_sorted_by_utf16_code_units(d: dict[str, int]) -> None:
    out = json.loads(canonical_json(d), object_pairs_hook=list)
    keys = [k for k, _ in out]
    assert keys == sorted(d, key=lambda k: k.encode("utf-16-be"))


# --- types and their meaning -----------------------------------------------------------------


def test_examples() -> None:
    assert canonical_json({"b": 1, "a": [True, False, None]}) == b'{"a":[true,false,null],"b":1}'
    assert canonical_json((1, 2.5, -0.0, 1e21, 1e-7)) == b"[1,2.5,0,1e+21,1e-7]"
    assert canonical_json("\u2028\x7f\x1f") == '"\u2028\x7f\\u001f"'.encode()
    assert canonical_json({"\U0001f600": 1, "\ue000": 2}) == '{"\U0001f600":1,"\ue000":2}'.encode()
    assert len(input_hash({})) == 64


def test_subclasses_keep_their_base_meaning() -> None:
    class Color(enum.IntEnum):
        RED = 1

    class Name(str, enum.Enum):
        A = "a"

    Point = namedtuple("Point", "x y")
    value = OrderedDict([("z", Point(1, 2)), ("c", Color.RED), (Name.A, Name.A)])
    assert canonical_json(value) == b'{"a":"a","c":1,"z":[1,2]}'
    assert canonical_json(True) == b"true"  # bool is not an int here


def test_default_converts_unknown_types() -> None:
    assert canonical_json({"s": {3, 1}}, default=sorted) == b'{"s":[1,3]}'
    assert input_hash({"s": {1}}, default=list) == input_hash({"s": [1]})


def test_default_errors_pass_through() -> None:
    def boom(obj: object) -> object:
        raise KeyError("nope")

    with pytest.raises(KeyError):
        canonical_json(object(), default=boom)


def test_default_returning_unconvertible_values_is_bounded() -> None:
    class Box:
        pass

    with pytest.raises(CanonicalizationError, match="nesting deeper"):
        canonical_json(Box(), default=lambda o: Box())
    with pytest.raises(TypeError, match="unchanged"):
        canonical_json(Box(), default=lambda o: o)


def test_reentrant_default() -> None:
    # `default` that itself canonicalizes must not corrupt the outer buffer.
    out = canonical_json({"a": {1}, "b": 2}, default=lambda o: canonical_json(sorted(o)).decode())
    assert out == b'{"a":"[1]","b":2}'


# --- refusals -----------------------------------------------------------------------------------


def deep_list(n: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(n - 1):
        value = [value]
    return value


def cyclic() -> dict[str, Any]:
    d: dict[str, Any] = {"a": [1]}
    d["a"].append(d)
    return d


class Weird(str):
    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


REFUSALS: list[tuple[str, Any, str | None, str]] = [
    ("nan", {"items": [{"price": math.nan}]}, "$.items[0].price", "NaN"),
    ("inf", [1, math.inf], "$[1]", "Infinity"),
    ("-inf", {"x": -math.inf}, "$.x", "-Infinity"),
    ("big int", {"id": 2**53}, "$.id", "2**53"),
    ("small int", {"id": -(2**53)}, "$.id", "2**53"),
    ("huge int", [10**400], "$[0]", "2**53"),
    ("lone surrogate value", {"t": "a\ud800"}, "$.t", "lone surrogate"),
    ("lone surrogate key", {"x": {"\udc00": 1}}, "$.x", "lone surrogate"),
    ("int key", {"a": {1: "x"}}, "$.a", "key of type int"),
    ("tuple key", {(1,): "x"}, "$", "key of type tuple"),
    ("set", {"tags": {"a"}}, "$.tags", "type set"),
    ("bytes", [b"x"], "$[0]", "type bytes"),
    ("odd key", {"a b": [object()]}, "$['a b'][0]", "type object"),
    ("too deep", deep_list(dar.MAX_DEPTH + 1), "$" + "[0]" * dar.MAX_DEPTH, "nesting deeper"),
    ("10,000 deep", deep_list(10_000), None, "nesting deeper"),
    ("cycle", cyclic(), "$.a[1]", "cycle"),
    ("duplicate names", {Weird("k"): 1, Weird("k"): 2}, "$", "duplicate member name"),
]


@pytest.mark.parametrize(
    ("value", "path", "fragment"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refusals_name_the_path_and_the_problem(
    value: Any, path: str | None, fragment: str
) -> None:
    with pytest.raises(CanonicalizationError) as info:
        canonical_json(value)
    err = info.value
    assert isinstance(err, ValueError)
    if path is not None:
        assert err.path == path
    assert fragment in str(err)
    assert str(err).startswith(f"at {err.path}: ")
    # The same refusal from the hashing entry points, and the interpreter is still healthy.
    with pytest.raises(CanonicalizationError):
        input_hash(value)
    with pytest.raises(CanonicalizationError):
        input_hashes([1, value])
    assert canonical_json({"ok": [1, 2]}) == b'{"ok":[1,2]}'


def test_deepest_allowed_nesting_is_accepted() -> None:
    assert canonical_json(deep_list(dar.MAX_DEPTH)).startswith(b"[[")


TEXT_REFUSALS = [
    ('{"k": 1, "k": 2}', "$", "duplicate member name"),
    ('{"a": [{"k": 1, "k": 2}]}', "$.a[0]", "duplicate member name"),
    ('{"id": 9007199254740993}', "$.id", "2**53"),
    ('{"id": 18446744073709551617}', "$.id", "2**53"),
    ('{"n": 1e400}', "$.n", "Infinity"),
    ('["\\ud800"]', "$[0]", "lone surrogate"),
    ('{"a": [1,]}', "$.a[1]", "invalid JSON"),
    ("[" * 10_000, None, "nesting deeper"),
    ("", "$", "invalid JSON"),
    ("NaN", "$", "invalid JSON"),
]


@pytest.mark.parametrize(("text", "path", "fragment"), TEXT_REFUSALS)
def test_text_refusals(text: str, path: str | None, fragment: str) -> None:
    for form in (text, text.encode()):
        with pytest.raises(CanonicalizationError) as info:
            canonical_json_from_text(form)
        if path is not None:
            assert info.value.path == path
        assert fragment in str(info.value)
        with pytest.raises(CanonicalizationError):
            input_hash_from_text(form)


@given(st.lists(json_values, max_size=30), st.sampled_from([None, 1, 2, 3]))
def test_batch_of_texts_equals_one_by_one(values: list[Any], threads: int | None) -> None:
    texts: list[str | bytes] = [json.dumps(v, ensure_ascii=False) for v in values]
    texts += [json.dumps(v).encode() for v in values[::2]]
    try:
        expected = [input_hash_from_text(t) for t in texts]
    except (CanonicalizationError, UnicodeEncodeError):
        with pytest.raises((CanonicalizationError, UnicodeEncodeError)):
            input_hashes_from_texts(texts, threads=threads)
        return
    assert input_hashes_from_texts(texts, threads=threads) == expected
    assert input_hashes_from_texts(iter(texts)) == expected


def test_batch_of_texts_large_and_empty() -> None:
    texts = [json.dumps({"i": i, "items": [{"b": i * 0.1, "a": str(i)}] * 5}) for i in range(3000)]
    expected = [input_hash_from_text(t) for t in texts]
    assert input_hashes_from_texts(texts) == expected
    assert input_hashes_from_texts(texts, threads=2) == expected
    assert input_hashes_from_texts([]) == []


FORKED_BATCH = """
import os, sys, dar
texts = ['{"b": 1, "a": [2]}'] * 500
parent = dar.input_hashes_from_texts(texts)
big = {"rows": [{"id": i, "name": "x" * 40} for i in range(6000)]}
parent_big = dar.input_hash(big)
pid = os.fork()
if pid == 0:
    ok = dar.input_hashes_from_texts(texts) == parent and dar.input_hash(big) == parent_big
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_worker_threads_work_in_a_forked_child() -> None:
    """The parent's worker threads do not exist in a forked child: it starts its own."""
    done = subprocess.run([sys.executable, "-c", FORKED_BATCH], timeout=120, check=False)
    assert done.returncode == 0


@pytest.mark.parametrize(("text", "path", "fragment"), TEXT_REFUSALS)
def test_batch_of_texts_names_the_item_and_the_path(
    text: str, path: str | None, fragment: str
) -> None:
    for form in (text, text.encode()):
        batch: list[str | bytes] = ['{"ok": 1}'] * 5 + [form] + ['{"k": 1, "k": 2}']
        for threads in (None, 1, 2):
            with pytest.raises(CanonicalizationError) as info:
                input_hashes_from_texts(batch, threads=threads)
            assert str(info.value).startswith("item 5: at ")
            if path is not None:
                assert info.value.path == path
            assert fragment in str(info.value)


def test_batch_of_texts_refuses_other_types() -> None:
    with pytest.raises(TypeError):
        input_hashes_from_texts(["{}", 1])  # type: ignore[list-item]
    with pytest.raises(CanonicalizationError, match="item 1: at \\$: invalid JSON"):
        input_hashes_from_texts(["{}", "\ud800"])
    with pytest.raises(ValueError, match="threads"):
        input_hashes_from_texts(["{}"], threads=0)


def test_text_must_be_str_or_bytes() -> None:
    with pytest.raises(TypeError):
        canonical_json_from_text(42)  # type: ignore[arg-type]
    with pytest.raises(CanonicalizationError, match="lone surrogate"):
        canonical_json_from_text('"\ud800"')
    with pytest.raises(CanonicalizationError, match="not UTF-8"):
        canonical_json_from_text(b'"\xff"')


def test_errors_pickle_with_their_path() -> None:
    import pickle

    err = CanonicalizationError("at $.a: bad", "$.a")
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.path) == ("at $.a: bad", "$.a")


def test_recursion_limit_is_not_involved() -> None:
    # The Rust walker does not use Python's recursion: a tiny limit changes nothing.
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(50)
    try:
        assert canonical_json(deep_list(100)).count(b"[") == 100
    finally:
        sys.setrecursionlimit(old)
