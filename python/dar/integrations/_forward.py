"""What the SDK modules share: the session a call belongs to, and dar tools that stand for
tools a framework owns.

A framework's tool (an MCP tool, a LangChain tool) is run by the framework, not by dar. To
give its calls dar's rules, idempotency and log, each is registered in the runtime as a dar
tool whose handler runs the framework's own invocation of the call in flight. That
invocation is passed through a context variable, since the dar tool is registered once per
name while every call brings its own.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from typing import Any

from pydantic_core import to_jsonable_python

from dar.context import current_session, enclosing_call
from dar.core.decide import unruled
from dar.effects import Effect
from dar.errors import ConfigurationError
from dar.rules import Deny, Rule
from dar.runtime.base import RuntimeBase
from dar.signature import Signature
from dar.tools import Tool

#: The framework's own invocation of the call in flight, given the arguments to run it on:
#: what the stand-in tool runs.
Invocation = Callable[[dict[str, Any]], Any]
_invocation: ContextVar[Invocation | None] = ContextVar("dar_invocation", default=None)

_registering = threading.Lock()

EffectMap = Mapping[str, "Effect | str"]


class Forward:
    """The handler of a stand-in tool: runs the framework's invocation of the current call
    on the arguments dar validated, hashed and logged (a person's edit, when one was
    approved: never the request's arguments behind the log's back)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.__name__ = name

    def __call__(self, **arguments: Any) -> Any:
        run = _invocation.get()
        if run is None:
            raise RuntimeError(f"{self.name} belongs to a framework and runs only through it")
        return run({name: to_jsonable_python(v, by_alias=True) for name, v in arguments.items()})


def correlation(explicit: str | None, framework_id: str | None) -> str | None:
    """Explicit id, else the enclosing dar session or call (None lets the runtime pick it),
    else the framework's own conversation id."""
    if explicit is not None:
        return explicit
    if current_session.get() is not None or enclosing_call.get() is not None:
        return None
    return framework_id


def effects_of(effects: EffectMap | None) -> dict[str, Effect]:
    """Validate an effect map now, so a typo fails at start-up, not at a call."""
    out: dict[str, Effect] = {}
    for pattern, effect in (effects or {}).items():
        try:
            out[pattern] = Effect(effect)
        except ValueError:
            raise ConfigurationError(
                f"effects[{pattern!r}] = {effect!r} is not an effect; use one of: "
                + ", ".join(e.value for e in Effect)
            ) from None
    return out


def effect_for(name: str, effects: Mapping[str, Effect]) -> Effect:
    """The exact name's effect, else the first matching glob's; a tool nobody classified is
    irreversible, so it runs only when a rule vouches for it."""
    if name in effects:
        return effects[name]
    for pattern, effect in effects.items():
        if fnmatch.fnmatchcase(name, pattern):
            return effect
    return Effect.IRREVERSIBLE


def is_stand_in(tool: Tool[Any]) -> bool:
    """Whether ``tool`` was registered here for a framework's tool."""
    return isinstance(tool.handler, Forward)


def stand_in(
    rt: RuntimeBase,
    name: str,
    effects: Mapping[str, Effect],
    signature: Callable[[], Signature | None] | None = None,
) -> Tool[Any] | str:
    """The dar tool standing for the framework's tool ``name``, registered on first use; or,
    when a dar tool of that name exists already, the refusal the model reads instead.
    ``signature()``, read once, validates its arguments as an owned tool's are (without
    one, any object fits)."""
    with _registering:  # framework threads may meet the same new name at once
        tool = next((t for t in rt.tools if t.name == name), None)
        if tool is not None:
            if is_stand_in(tool):
                return tool
            return refusal(f"a dar tool named {name!r} is already registered in the runtime")
        tool = Tool(name=name, handler=Forward(name), effect=effect_for(name, effects))
        read = None if signature is None else signature()
        if read is not None:
            tool.__dict__["signature"] = read  # as @tool sets it: read before any call
        try:
            rt.add_tool(tool)
        except ConfigurationError:
            # Irreversible and no rule vouches for it: register it behind a rule that
            # refuses (so the call is logged as refused) until some other rule applies.
            rt.add_rule(until_vouched(rt, tool))
            rt.add_tool(tool)
        return tool


def until_vouched(rt: RuntimeBase, tool: Tool[Any]) -> Rule:
    """Fail closed: refuse ``tool`` while no rule of the application applies to it."""
    own = f"dar:undeclared:{tool.name}"

    def check(inp: dict[str, Any], ctx: Any) -> Deny | bool:
        vouched = any(r.name != own and r.applies(tool.name, tool.effect) for r in rt.rules)
        return True if vouched else Deny(unruled(tool.name) + " (or give it an effect)")

    return Rule(name=own, check=check, applies_to=tool.name)


def refusal(reason: str) -> str:
    return f"Refused: {reason}. Nothing was done."


def invoking(run: Invocation) -> Token[Invocation | None]:
    """Make ``run`` the invocation a stand-in tool executes; returns the reset token."""
    return _invocation.set(run)


def done_invoking(token: Token[Invocation | None]) -> None:
    _invocation.reset(token)
