"""The arguments of an upstream tool against its inputSchema, in dar's words: what each kind
of JSON Schema error reads as, and what an unusable schema does. (Through a real proxy and
upstream: tests/mcp_proxy/test_proxy.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from dar.mcp_proxy.arguments import checker, schema_signature
from dar.signature import ArgumentError


async def handler(**arguments: Any) -> dict[str, Any]:
    return arguments


def problems(schema: dict[str, Any], value: Any) -> list[str]:
    check, why = checker(schema)
    assert check is not None, why
    return check(value)


def test_optional_types_and_drafts_read_as_the_expected_types() -> None:
    # ``int | None`` as pydantic (and so most Python MCP servers) writes it.
    optional = {"properties": {"qty": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}}
    assert problems(optional, {"qty": "2"}) == ["$.qty: expected integer or null, got string"]
    assert problems(optional, {"qty": None}) == []
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", **optional}
    assert problems(draft7, {"qty": [1]}) == ["$.qty: expected integer or null, got array"]
    assert problems({"type": "object"}, ["a"]) == ["$: expected object, got array"]


def test_other_keywords_keep_the_validators_words_at_their_path() -> None:
    schema = {
        "properties": {"tags": {"items": {"minLength": 2}}, "kind": {"const": "box"}},
        "patternProperties": {"^x-": {}},
        "additionalProperties": False,
    }
    value = {"tags": ["ok", "a"], "kind": "bag", "x-trace": 1, "odd key": 2}
    assert problems(schema, value) == [
        '$.kind: expected "box", got "bag"',
        "$.tags[1]: 'a' is too short",
        '$["odd key"]: unexpected argument',
    ]


def test_a_schema_with_a_ref_that_does_not_resolve_checks_nothing_and_says_so_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/gone"}}}
    signature = schema_signature("dangling", handler, schema)
    for _ in range(2):
        assert signature.validate('{"a":1}') == {"a": 1}
    said = capsys.readouterr().err
    assert said.count("the arguments of upstream tool 'dangling' are not checked") == 1
    assert "$ref that does not resolve" in said


def test_the_stand_in_tool_refuses_with_every_problem_and_shows_the_upstreams_schema() -> None:
    schema = {"type": "object", "required": ["to", "cents"], "properties": {"cents": {}}}
    signature = schema_signature("send", handler, schema)
    with pytest.raises(ArgumentError) as refused:
        signature.validate("{}")
    assert refused.value.problems == ["$.cents: required, missing", "$.to: required, missing"]
    assert signature.schema() == schema
