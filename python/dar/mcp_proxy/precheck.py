"""A tool's usual JSON Schema compiled to plain Python, to pass a fitting value in a few steps.

The proxy checks every call's arguments against the tool's ``inputSchema``, and every result's
structured content against its ``outputSchema``, with ``jsonschema``, which walks the schema
keyword by keyword through generators and evolved validators: on the fast path, the two
checks cost more than any other step of the proxy's own. Nearly every tool's schemas are a
few typed properties, so `precheck` turns such a schema into a predicate that answers True
exactly when ``jsonschema`` (draft 2020-12, no format checker: as the proxy and the SDK's
session use it) finds the value valid. A schema with anything else (``$ref``, ``$schema``,
bounds, patterns...) gets no predicate; nor does a value the predicate refuses skip the
full check: ``jsonschema`` then says what is wrong, in its own words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

#: Keywords that only annotate: they accept every value.
ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$comment", "deprecated", "format"}
    | {"readOnly", "writeOnly"}
)
#: What each ``type`` accepts, as draft 2020-12 has it (``1.0`` is an integer, ``True`` is not).
TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}
#: The keywords `precheck` compiles.
KNOWN = ANNOTATIONS | {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "anyOf",
    "enum",
}


def precheck(schema: Any) -> Check | None:
    """A predicate exactly as strict as ``jsonschema`` on ``schema``, or None when the
    schema uses anything this module does not compile."""
    if isinstance(schema, dict) and "$schema" in schema:
        return None  # another draft, perhaps
    return _compiled(schema)


def _compiled(schema: Any) -> Check | None:
    if schema is True:
        return anything
    if schema is False:
        return lambda value: False
    if not isinstance(schema, dict) or not KNOWN.issuperset(schema):
        return None
    parts = [_type(schema), _object(schema), _items(schema), _any_of(schema), _enum(schema)]
    checks = [part for part in parts if part is not anything]
    if any(check is None for check in checks):
        return None
    return both(*checks) if checks else anything


def anything(value: Any) -> bool:
    """The check of a keyword the schema does not have."""
    return True


def both(*checks: Check | None) -> Check:
    """All the checks (the caller has made sure none is None)."""
    found = [check for check in checks if check is not None]
    if len(found) == 1:
        return found[0]
    return lambda value: all(check(value) for check in found)


def _type(schema: dict[str, Any]) -> Check | None:
    if "type" not in schema:
        return anything
    named = schema["type"]
    names = [named] if isinstance(named, str) else named
    if not isinstance(names, list) or not names or not all(n in TYPES for n in names):
        return None
    checks = [TYPES[n] for n in names]
    if len(checks) == 1:
        return checks[0]
    return lambda value: any(check(value) for check in checks)


def _object(schema: dict[str, Any]) -> Check | None:
    """``properties``, ``required`` and ``additionalProperties``: they judge objects only."""
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not isinstance(properties, dict) or not isinstance(required, list):
        return None
    if not all(isinstance(name, str) for name in required):
        return None
    each = {name: _compiled(sub) for name, sub in properties.items()}
    named = [(name, check) for name, check in each.items() if check is not None]
    other = _compiled(extra)
    if other is None or len(named) < len(each):
        return None
    if not named and not required and extra is True:
        return anything
    named = [(name, check) for name, check in named if check is not anything]

    def fits(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        if not all(name in value for name in required):
            return False
        if not all(check(value[name]) for name, check in named if name in value):
            return False
        return extra is True or all(other(v) for k, v in value.items() if k not in properties)

    return fits


def _items(schema: dict[str, Any]) -> Check | None:
    if "items" not in schema:
        return anything
    item = _compiled(schema["items"])
    if item is None:
        return None
    return lambda value: not isinstance(value, list) or all(item(v) for v in value)


def _any_of(schema: dict[str, Any]) -> Check | None:
    if "anyOf" not in schema:
        return anything
    branches = schema["anyOf"]
    if not isinstance(branches, list) or not branches:
        return None
    compiled = [_compiled(branch) for branch in branches]
    checks = [check for check in compiled if check is not None]
    if len(checks) < len(compiled):
        return None
    return lambda value: any(check(value) for check in checks)


def _enum(schema: dict[str, Any]) -> Check | None:
    """An ``enum`` of strings (other members compare by JSON's rules, not Python's)."""
    if "enum" not in schema:
        return anything
    members = schema["enum"]
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        return None
    allowed = frozenset(members)
    return lambda value: isinstance(value, str) and value in allowed
