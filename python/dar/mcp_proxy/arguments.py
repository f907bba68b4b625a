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
from collections.abc import Callable
from typing import Any

from referencing.exceptions import Unresolvable

from dar.integrations._schema import Check, checker
from dar.mcp_proxy.upstream import log
from dar.signature import ArgumentError, Signature, read_signature

_said: set[tuple[str, str]] = set()


@dataclasses.dataclass(frozen=True, eq=False)
class SchemaSignature(Signature):
    """A signature whose arguments are those the upstream's ``inputSchema`` accepts."""

    tool: str
    input_schema: dict[str, Any]
    check: Check | None  # None: the schema is unusable, nothing is checked

    def validate(self, canonical: str, *, coerce: bool = False) -> dict[str, Any]:
        # The stand-in handler takes any keyword arguments: they are the object itself,
        # with no model to validate it into.
        arguments: dict[str, Any] = json.loads(canonical)
        if self.check is None:
            return arguments
        try:
            problems = self.check(arguments)
        except Unresolvable as exc:
            unchecked(self.tool, f"its inputSchema has a $ref that does not resolve ({exc})")
            problems = []
        if problems:
            raise ArgumentError(problems)
        return arguments

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
