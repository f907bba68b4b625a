"""The arguments of an upstream tool against its inputSchema: the stand-in tool refuses in
dar's words, and an unusable schema checks nothing and says so. (Through a real proxy and
upstream: tests/mcp_proxy/test_proxy.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from dar.mcp_proxy.arguments import schema_signature
from dar.signature import ArgumentError


async def handler(**arguments: Any) -> dict[str, Any]:
    return arguments


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
