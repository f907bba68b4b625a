"""A handler's signature as the one source of its arguments' validation, JSON Schema and
output conversion, so what the model is told and what is enforced cannot drift.

The signature (type hints, defaults, ``Annotated`` constraints, pydantic models, enums,
``Literal``) becomes a pydantic model; its docstring (Google, NumPy or Sphinx style) gives
the descriptions. Arguments are validated as JSON, strictly by default: a date may arrive as
an ISO string, but ``"3"`` is not an integer, so what the model sent is what runs.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from collections.abc import Callable
from typing import Any

import docstring_parser
import pydantic
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from dar.errors import ConfigurationError


class ArgumentError(ValueError):
    """Arguments that do not fit the handler's signature; ``problems`` are one line each,
    every one starting with the JSON path of what is wrong."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


#: Return annotations whose values are already JSON: a hit returns the recorded value as is.
_PLAIN = (dict, list, str, int, float, bool, type(None), None, Any)

_EXPECTED = {
    "int_type": "integer",
    "int_from_float": "integer",
    "float_type": "number",
    "string_type": "string",
    "bool_type": "boolean",
    "list_type": "array",
    "tuple_type": "array",
    "set_type": "array",
    "dict_type": "object",
    "model_type": "object",
    "model_attributes_type": "object",
    "dataclass_type": "object",
    "typed_dict_type": "object",
    "none_required": "null",
}


@dataclasses.dataclass(frozen=True, eq=False)
class Signature:
    """What a tool accepts and returns, read once from its handler."""

    description: str
    model: type[BaseModel]
    names: dict[str, str]  # argument name as sent -> field name in ``model``
    returns: TypeAdapter[Any] | None  # None: the output is plain JSON already

    def validate(self, canonical: str, *, coerce: bool = False) -> dict[str, Any]:
        """The handler's keyword arguments from the arguments' canonical JSON text."""
        try:
            if coerce:
                parsed = self.model.model_validate(json.loads(canonical), strict=False)
            else:
                parsed = self.model.model_validate_json(canonical)
        except pydantic.ValidationError as exc:
            raise ArgumentError([problem(e) for e in exc.errors(include_url=False)]) from None
        kwargs = {arg: getattr(parsed, field) for arg, field in self.names.items()}
        kwargs = {
            arg: value
            for arg, value in kwargs.items()
            if self.names[arg] in parsed.model_fields_set
        }
        kwargs.update(parsed.model_extra or {})
        return kwargs

    def coerced(self, canonical: str) -> dict[str, Any]:
        """The arguments as JSON after lax validation: what a ``coerce=True`` tool hashes."""
        try:
            parsed = self.model.model_validate(json.loads(canonical), strict=False)
        except pydantic.ValidationError as exc:
            raise ArgumentError([problem(e) for e in exc.errors(include_url=False)]) from None
        dumped: dict[str, Any] = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return dumped

    def schema(self) -> dict[str, Any]:
        """JSON Schema (2020-12) of the arguments, with the docstring's descriptions."""
        schema = self.model.model_json_schema()
        schema.pop("title", None)
        _drop_titles(schema)
        if self.description:
            schema["description"] = self.description
        return schema

    def load_output(self, value: Any) -> Any:
        """A recorded (JSON) output as the handler's return annotation names it; the plain
        JSON value when it does not fit (a redacted output, say)."""
        if self.returns is None:
            return value
        try:
            return self.returns.validate_python(value)
        except pydantic.ValidationError:
            return value


# NaN and infinities stay floats through the conversion, so the canonical form refuses them
# (pydantic's default would write them as null: another value than the handler returned).
_ANY: TypeAdapter[Any] = TypeAdapter(Any, config=ConfigDict(ser_json_inf_nan="constants"))


def to_json(value: Any) -> Any:
    """A handler's output in JSON terms: pydantic models, dataclasses, dates, UUIDs,
    decimals and enums as pydantic writes them in JSON mode. None when it is plain JSON
    already (so its own problem, a NaN say, is reported as is, not turned into null)."""
    if not _needs_conversion(value):
        return None
    return _ANY.dump_python(value, mode="json", by_alias=True)


def _needs_conversion(value: Any) -> bool:
    if isinstance(value, dict):
        return any(not isinstance(k, str) or _needs_conversion(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_needs_conversion(v) for v in value)
    return not (value is None or isinstance(value, (str, int, float, bool)))


def problem(error: Any) -> str:
    """One validation error as ``$.path: what is wrong``."""
    where = json_path(error["loc"])
    kind = error["type"]
    if kind == "missing":
        return f"{where}: required, missing"
    if kind == "extra_forbidden":
        return f"{where}: unexpected argument"
    expected = _EXPECTED.get(kind)
    if expected is not None:
        return f"{where}: expected {expected}, got {json_type(error.get('input'))}"
    return f"{where}: {error['msg'][:1].lower()}{error['msg'][1:]}"


def json_path(loc: tuple[Any, ...]) -> str:
    """``('items', 3, 'price')`` as ``$.items[3].price``."""
    out = "$"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def json_type(value: Any) -> str:
    """The JSON name of a decoded JSON value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _drop_titles(node: Any) -> None:
    """Pydantic titles each field after its name; models do not need them (and Gemini's
    schema subset refuses some). Property names called "title" stay."""
    if isinstance(node, dict):
        if isinstance(node.get("title"), str):
            del node["title"]
        for key, child in node.items():
            if key == "properties" and isinstance(child, dict):
                for prop in child.values():
                    _drop_titles(prop)
            else:
                _drop_titles(child)
    elif isinstance(node, list):
        for child in node:
            _drop_titles(child)


def read_signature(
    fn: Callable[..., Any],
    tool_name: str,
    *,
    coerce: bool,
    localns: dict[str, Any] | None = None,
) -> Signature:
    """Build the signature of ``fn``; a hint pydantic cannot validate or serialize is a
    ``ConfigurationError`` now, at decoration, not at the first call."""
    target = fn if inspect.isroutine(fn) else getattr(fn, "__call__", fn)  # noqa: B004
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"tool {tool_name!r}: cannot read its signature: {exc}") from None
    try:
        hints = typing.get_type_hints(target, localns=localns, include_extras=True)
    except Exception as exc:
        raise ConfigurationError(
            f"tool {tool_name!r}: cannot resolve its type hints ({type(exc).__name__}: {exc}); "
            "define the types at module level"
        ) from None
    doc = docstring_parser.parse(inspect.getdoc(fn) or "")
    described = {p.arg_name: p.description for p in doc.params if p.description}
    fields: dict[str, Any] = {}
    names: dict[str, str] = {}
    extra = "forbid"
    for i, (name, param) in enumerate(sig.parameters.items()):
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            extra = "allow"
            continue
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            continue  # arguments arrive by name: nothing can fill *args
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise ConfigurationError(
                f"tool {tool_name!r}: argument {name!r} is positional-only; "
                "tool arguments are passed by name"
            )
        hint = hints.get(name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        # Fields get neutral names and the argument's name as alias: an argument may be
        # called `json` or `_id` without clashing with pydantic's own attributes.
        field = f"a{i}"
        fields[field] = (hint, Field(default, alias=name, description=described.get(name)))
        names[name] = field
    config = ConfigDict(strict=not coerce, extra=extra)  # type: ignore[typeddict-item]
    try:
        model = pydantic.create_model(f"{tool_name}_arguments", __config__=config, **fields)
        model.model_json_schema()
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as e:
        raise ConfigurationError(
            f"tool {tool_name!r}: its arguments cannot be validated: {e}"
        ) from None
    returns = _returns(hints.get("return", Any), tool_name)
    description = "\n\n".join(
        part for part in (doc.short_description, doc.long_description) if part
    )
    return Signature(description, model, names, returns)


def _returns(hint: Any, tool_name: str) -> TypeAdapter[Any] | None:
    if hint in _PLAIN or typing.get_origin(hint) in (dict, list):
        return None
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(hint)
        adapter.json_schema(mode="serialization")
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as e:
        raise ConfigurationError(
            f"tool {tool_name!r}: its return type {hint!r} cannot be recorded as JSON: {e}"
        ) from None
    return adapter
