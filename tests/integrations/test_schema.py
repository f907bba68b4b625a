"""A tool's JSON Schema in dar's words: what each kind of JSON Schema error reads as. (Through
a real proxy and upstream: tests/mcp_proxy/test_proxy.py; through the frameworks' own tools:
tests/integrations/test_langchain.py and test_pydantic_ai.py.)"""

from __future__ import annotations

from typing import Any

from dar.integrations._schema import checker, misfits


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


def test_an_unusable_schema_checks_nothing() -> None:
    assert misfits({"type": "no-such-type"}, {"a": 1}) == []
    assert checker({"type": "no-such-type"})[1] is not None
