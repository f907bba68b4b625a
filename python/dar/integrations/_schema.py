"""A JSON Schema as dar words a misfit: ``$.amount: expected number, got string``.

Tools dar does not own (an MCP server's, a framework's) come with a JSON Schema instead of
a handler signature. Their arguments are checked against it before any rule reads them,
and refused in the words dar uses for its own tools, whichever integration met them.
``jsonschema`` does the checking (each extra that needs it depends on it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from jsonschema.exceptions import SchemaError, ValidationError  # type: ignore[import-untyped]
from jsonschema.validators import (  # type: ignore[import-untyped]
    Draft202012Validator,
    validator_for,
)
from referencing import Registry

from dar.signature import json_path, json_type

#: The problems of one value against a schema, one line each (empty: it fits).
Check = Callable[[Any], list[str]]

#: How much of a value or of a validator's message one problem quotes.
QUOTED = 200


def misfits(schema: dict[str, Any], value: Any) -> list[str]:
    """Each way ``value`` does not fit ``schema`` (nothing when the schema is unusable)."""
    check, _why = _compiled(json.dumps(schema, sort_keys=True))
    return [] if check is None else check(value)


@lru_cache(maxsize=256)
def _compiled(schema: str) -> tuple[Check | None, str | None]:
    return checker(json.loads(schema))


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
