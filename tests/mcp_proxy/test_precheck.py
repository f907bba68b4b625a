"""The proxy's compiled schema checks accept exactly what ``jsonschema`` accepts (draft 2020-12,
as the proxy and the SDK's session run it), and compile the schemas tools usually have."""

from __future__ import annotations

from typing import Any

from hypothesis import assume, example, given
from hypothesis import strategies as st
from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped]
from jsonschema.validators import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry

from dar.mcp_proxy.precheck import precheck

NAMES = st.sampled_from(["a", "b", "c"])
TYPE = st.sampled_from(["object", "array", "string", "boolean", "null", "integer", "number"])
SCHEMAS = st.recursive(
    st.booleans() | st.fixed_dictionaries({}, optional={"type": TYPE | st.lists(TYPE)}),
    lambda inner: st.fixed_dictionaries(
        {},
        optional={
            "type": TYPE | st.lists(TYPE, max_size=3),
            "properties": st.dictionaries(NAMES, inner, max_size=3),
            "required": st.lists(NAMES, max_size=3),
            "additionalProperties": inner,
            "items": inner,
            "anyOf": st.lists(inner, min_size=1, max_size=3),
            "enum": st.lists(st.text(max_size=2) | st.integers(0, 1), max_size=3),
            "title": st.text(max_size=3),
            "format": st.just("date-time"),
            "minimum": st.integers(0, 2),  # not compiled: jsonschema alone
        },
    ),
    max_leaves=8,
)
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-2, 2)
    | st.sampled_from([0.0, 1.0, 1.5, -2.0, float("inf"), float("nan")])
    | st.text(max_size=2),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
    max_leaves=8,
)


@given(schema=SCHEMAS, value=VALUES)
@example({"type": "integer"}, 1.0)
@example({"type": "integer"}, True)
@example({"type": "number"}, False)
@example({"type": ["string", "null"]}, None)
@example({"type": "array", "items": {"type": "string"}}, ["a", 1])
@example({"items": {"type": "integer"}}, [1, 2.0, "x"])
@example({"properties": {"a": {"type": "string"}}, "required": ["a"]}, "not an object")
@example({"properties": {"a": {"type": "string"}}, "required": ["a"]}, {"b": "x"})
@example({"additionalProperties": {"type": "integer"}}, {"a": 1.0, "b": "x"})
@example({"anyOf": [{"type": "string"}, {"type": "integer"}]}, 1.5)
@example({"enum": ["a"]}, "b")
def test_a_compiled_check_accepts_exactly_what_jsonschema_accepts(schema: Any, value: Any) -> None:
    check = precheck(schema)
    assume(check is not None)
    assert check is not None
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError:
        assume(False)  # the proxy checks nothing against a schema that is none
    validator = Draft202012Validator(schema, registry=Registry())
    assert check(value) == validator.is_valid(value)


def test_the_usual_schemas_are_compiled_and_the_rest_left_to_jsonschema() -> None:
    arguments = {
        "type": "object",
        "title": "send_invoiceArguments",
        "properties": {
            "to": {"type": "string", "title": "To"},
            "cents": {"type": "integer"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"enum": ["a", "b"]},
        },
        "required": ["to", "cents"],
        "additionalProperties": False,
    }
    check = precheck(arguments)
    assert check is not None
    assert check({"to": "x", "cents": 5, "note": None, "tags": ["t"], "kind": "a"})
    assert not check({"to": "x", "cents": "5"})
    assert not check({"to": "x", "cents": 5, "extra": 1})
    assert precheck({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}) is None
    assert precheck({"$schema": "http://json-schema.org/draft-04/schema#"}) is None
    assert precheck({"type": "integer", "minimum": 0}) is None
