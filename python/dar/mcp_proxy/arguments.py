"""The arguments of an upstream tool, checked against its ``inputSchema`` before any rule.

dar refuses a call of its own tools whose arguments do not fit the handler's signature, so a
rule never sees a wrong type. A proxied tool has no signature, only the JSON Schema the
upstream server lists; `schema_signature` makes that schema the stand-in tool's signature,
so the same step of the runtime refuses and logs a misfit, in the same words
(``invalid arguments: $.amount: expected number, got string``).

A schema that is itself invalid (or has a ``$ref`` that does not resolve) checks nothing:
the upstream validates its own arguments, and refusing every call would take down a tool
that works because of a fault in its listing the operator cannot fix from the policy. The
proxy says so on stderr, once per tool and fault.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from jsonschema.exceptions import SchemaError, ValidationError  # type: ignore[import-untyped]
from jsonschema.validators import (  # type: ignore[import-untyped]
    Draft202012Validator,
    validator_for,
)
from referencing import Registry
from referencing.exceptions import Unresolvable

from dar.mcp_proxy.upstream import log
from dar.signature import ArgumentError, Signature, json_path, json_type, read_signature

#: The problems of one value against a schema, one line each (empty: it fits).
Check = Callable[[Any], list[str]]

#: How much of a value or of a validator's message one problem quotes.
QUOTED = 200

_said: set[tuple[str, str]] = set()


@dataclasses.dataclass(frozen=True, eq=False)
class SchemaSignature(Signature):
    """A signature whose arguments are those the upstream's ``inputSchema`` accepts."""

    tool: str
    input_schema: dict[str, Any]
    check: Check | None  # None: the schema is unusable, nothing is checked

    def validate(self, canonical: str, *, coerce: bool = False) -> dict[str, Any]:
        if self.check is not None:
            try:
                problems = self.check(json.loads(canonical))
            except Unresolvable as exc:
                unchecked(self.tool, f"its inputSchema has a $ref that does not resolve ({exc})")
                problems = []
            if problems:
                raise ArgumentError(problems)
        return super().validate(canonical, coerce=coerce)

    def schema(self) -> dict[str, Any]:
        return dict(self.input_schema)


def schema_signature(
    tool: str, handler: Callable[..., Any], input_schema: dict[str, Any]
) -> SchemaSignature:
    """The signature of the stand-in for the upstream tool ``tool``: ``handler`` takes any
    keyword arguments, ``input_schema`` says which."""
    base = read_signature(handler, tool, coerce=False)
    check, why = checker(input_schema)
    if why is not None:
        unchecked(tool, why)
    return SchemaSignature(
        base.description, base.model, base.names, base.returns, tool, input_schema, check
    )


def unchecked(tool: str, why: str) -> None:
    """Tell the operator, once, that a tool's arguments reach the rules unchecked."""
    if (tool, why) not in _said:
        _said.add((tool, why))
        log(f"the arguments of upstream tool {tool!r} are not checked: {why}")


def checker(schema: dict[str, Any]) -> tuple[Check | None, str | None]:
    """A check of values against ``schema`` (JSON Schema 2020-12 unless its ``$schema``
    names another draft; ``$ref``s resolve only within it), or why there is none."""
    try:
        cls = validator_for(schema, default=Draft202012Validator)
        cls.check_schema(schema)
    except SchemaError as exc:
        where = f"{exc.json_path}: {_cut(exc.message)}"
        return None, f"its inputSchema is not a valid JSON Schema ({where})"
    validator = cls(schema, registry=Registry())

    def check(value: Any) -> list[str]:
        # Each line starts with its path: sorted, the same arguments always read the same.
        return sorted({p for e in validator.iter_errors(value) for p in problems(e)})

    return check, None


def problems(error: ValidationError) -> list[str]:
    """One validation error in dar's words: ``$.path: what is wrong``."""
    where = json_path(tuple(error.absolute_path))
    kind, wanted, value = error.validator, error.validator_value, error.instance
    if kind == "required" and isinstance(value, dict):
        return [f"{_at(error, name)}: required, missing" for name in wanted if name not in value]
    if kind == "additionalProperties" and wanted is False and isinstance(value, dict):
        return [f"{_at(error, name)}: unexpected argument" for name in _extra(error.schema, value)]
    if kind == "type":
        return [f"{where}: expected {_either(wanted)}, got {json_type(value)}"]
    if kind in ("anyOf", "oneOf") and _only_types(error.context):
        wanted = [t for c in error.context for t in _types(c.validator_value)]
        return [f"{where}: expected {_either(wanted)}, got {json_type(value)}"]
    if kind == "enum":
        listed = ", ".join(_shown(v) for v in wanted)
        return [f"{where}: expected one of {listed}, got {_shown(value)}"]
    if kind == "const":
        return [f"{where}: expected {_shown(wanted)}, got {_shown(value)}"]
    message = _cut(error.message)
    return [f"{where}: {message[:1].lower()}{message[1:]}"]


def _at(error: ValidationError, name: str) -> str:
    return json_path((*error.absolute_path, name))


def _extra(schema: dict[str, Any], value: dict[str, Any]) -> list[str]:
    """The members of ``value`` that neither ``properties`` nor ``patternProperties`` name."""
    named = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [k for k in value if k not in named and not any(re.search(p, k) for p in patterns)]


def _types(wanted: Any) -> list[str]:
    return [wanted] if isinstance(wanted, str) else [str(t) for t in wanted]


def _either(wanted: Any) -> str:
    return " or ".join(dict.fromkeys(_types(wanted)))


def _only_types(context: Iterable[ValidationError] | None) -> bool:
    """Whether every branch of an ``anyOf``/``oneOf`` failed on its type alone (``int |
    None`` as pydantic writes it): said as ``expected integer or null``."""
    errors = list(context or [])
    return bool(errors) and all(e.validator == "type" and not e.relative_path for e in errors)


def _shown(value: Any) -> str:
    return _cut(json.dumps(value, ensure_ascii=False, default=str))


def _cut(text: str) -> str:
    return text if len(text) <= QUOTED else text[: QUOTED - 1] + "…"
