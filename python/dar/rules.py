"""Rules: Python predicates that may refuse a call, with a reason, before it runs.

Rules fail closed: a check that raises, or runs past its timeout, refuses the call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dar.effects import Effect


@dataclass(frozen=True, slots=True)
class Allow:
    """The rule lets the call through."""


@dataclass(frozen=True, slots=True)
class Deny:
    """The rule refuses the call; ``reason`` is logged and returned to the caller."""

    reason: str


@dataclass(frozen=True, slots=True)
class NeedsApproval:
    """The rule sends the call to a person: it runs only once someone approves this exact
    call (tool, arguments, key and rules in force); ``reason`` tells them why."""

    reason: str


Verdict = Allow | Deny | NeedsApproval | bool


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What a rule check sees besides the input.

    ``events(**filters)`` reads the log (the same filters as ``Runtime.events``); on an
    ``AsyncRuntime`` it returns an awaitable.
    """

    tool: str
    effect: Effect
    correlation_id: str | None
    events: Callable[..., Any]


AppliesTo = str | Effect | Sequence[str]


@dataclass(frozen=True, eq=False)
class Rule:
    """A named check applied to the tools it names."""

    name: str
    check: Callable[[dict[str, Any], RuleContext], Any]
    applies_to: AppliesTo
    timeout: float = 5.0

    def applies(self, tool_name: str, effect: Effect) -> bool:
        """Whether this rule judges calls of that tool."""
        target = self.applies_to
        if isinstance(target, Effect):
            return target is effect
        if isinstance(target, str):
            return target == "*" or target == tool_name
        return tool_name in target


def rule(
    *, applies_to: AppliesTo, name: str | None = None, timeout: float = 5.0
) -> Callable[[Callable[[dict[str, Any], RuleContext], Any]], Rule]:
    """Declare a rule. ``applies_to``: a tool name, a list of names, ``"*"`` or an ``Effect``.

    The check gets ``(input, ctx)`` and returns ``Allow()``, ``Deny(reason)``,
    ``NeedsApproval(reason)`` (a person decides; a ``Deny`` from another rule still wins) or
    a bool; it
    may be a coroutine function on an ``AsyncRuntime``. A check running longer than
    ``timeout`` seconds refuses the call (async checks are cancelled; sync checks cannot be
    interrupted, so their result is discarded when they finish late).
    """
    if isinstance(applies_to, str) and applies_to not in ("*",) and not applies_to:
        raise ValueError("applies_to must name a tool, a list of tools, '*' or an Effect")

    def wrap(fn: Callable[[dict[str, Any], RuleContext], Any]) -> Rule:
        return Rule(name=name or fn.__name__, check=fn, applies_to=applies_to, timeout=timeout)

    return wrap


def refusal_of(rule_name: str, value: object) -> Deny | NeedsApproval | None:
    """Normalise what a check returned; anything unexpected refuses (fail closed)."""
    if value is True or isinstance(value, Allow):
        return None
    if isinstance(value, NeedsApproval):
        if not isinstance(value.reason, str):
            return Deny(f"rule {rule_name} asked for approval with a non-str reason")
        return value
    if value is False:
        return Deny(f"rule {rule_name} returned False")
    if isinstance(value, Deny):
        if not isinstance(value.reason, str):
            return Deny(
                f"rule {rule_name} refused with a {type(value.reason).__name__} reason, not a str"
            )
        return value
    return Deny(
        f"rule {rule_name} returned {type(value).__name__}, not Allow/Deny/NeedsApproval/bool"
    )
