"""What the sync and async runtimes share: configuration, rules, call set-up, and the
verdicts of user code.

The two runtimes differ only in how they execute the operations `dar.decide.plan`
yields (directly, or awaited with the store in worker threads); everything else is here,
once.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from dar.context import current_call
from dar.decide import CallSpec
from dar.effects import Status
from dar.errors import ConfigurationError
from dar.ops import Outcome
from dar.records import Result
from dar.rules import Deny, Rule, verdict_of
from dar.tools import Tool

DEFAULT_WAIT = 30.0


class RuntimeBase:
    """Rules, clock, identity and defaults of a runtime."""

    def __init__(
        self,
        *,
        rules: Iterable[Rule] = (),
        wait: float = DEFAULT_WAIT,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
    ) -> None:
        self._rules: tuple[Rule, ...] = ()
        for r in rules:
            self.add_rule(r)
        if wait < 0:
            raise ConfigurationError("wait must be >= 0 seconds")
        self.wait = wait
        self.clock = clock
        # Unique per runtime instance: a worker that lost its lease never mistakes a newer
        # claim for its own, even on the same host and process.
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        # Keys seen completed lately: only picks the cheaper statement for a likely hit.
        self._known: OrderedDict[str, None] = OrderedDict()

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The rules in force, in the order they are checked."""
        return self._rules

    def add_rule(self, rule: Rule) -> None:
        """Add a rule; it judges every later call it applies to."""
        if not isinstance(rule, Rule):
            raise TypeError(f"expected a Rule (use @rule(...)), got {type(rule).__name__}")
        if any(r.name == rule.name for r in self._rules):
            raise ConfigurationError(f"a rule named {rule.name!r} is already in force")
        self._rules = (*self._rules, rule)

    def remove_rule(self, rule: Rule | str) -> None:
        """Remove a rule (by object or name); ``KeyError`` when it is not in force."""
        name = rule if isinstance(rule, str) else rule.name
        if not any(r.name == name for r in self._rules):
            raise KeyError(name)
        self._rules = tuple(r for r in self._rules if r.name != name)

    def _spec(
        self,
        tool: Tool[Any],
        input: Any,
        correlation_id: str | None,
        key: str | None,
        events_reader: Callable[..., Any],
    ) -> CallSpec:
        """Everything the core needs for one call; nested calls inherit the session."""
        if not isinstance(tool, Tool):
            raise TypeError(f"execute() takes a Tool (use @tool(...)), got {type(tool).__name__}")
        if key is not None and (not isinstance(key, str) or not key):
            raise ConfigurationError(
                f"key must be a non-empty str, not {type(key).__name__} {key!r}"
            )
        if correlation_id is not None and not isinstance(correlation_id, str):
            raise ConfigurationError(
                f"correlation_id must be a str, not {type(correlation_id).__name__}"
            )
        parent = current_call.get()
        if parent is not None and correlation_id is None:
            correlation_id = parent.correlation_id
        return CallSpec(
            known_key=self._known.__contains__,
            tool=tool,
            input=input,
            rules=self._rules,
            owner=self.owner,
            clock=self.clock,
            wait=self.wait,
            events_reader=events_reader,
            correlation_id=correlation_id,
            parent_event_id=None if parent is None else parent.event_id,
            key=key,
        )


KNOWN_KEYS = 4096


def remember(runtime: RuntimeBase, result: Result) -> Result:
    """Note a completed key (an LRU of at most ``KNOWN_KEYS``); returns ``result``."""
    if result.key is not None and result.status in (Status.EXECUTED, Status.CACHED):
        known = runtime._known
        known[result.key] = None
        known.move_to_end(result.key)
        if len(known) > KNOWN_KEYS:
            known.popitem(last=False)
    return result


def rule_result(rule: Rule, value: object, elapsed: float) -> Deny | None:
    """A check's verdict, refusing when it ran past its timeout."""
    if elapsed > rule.timeout:
        return Deny(f"rule {rule.name} timed out after {elapsed:.3f}s (limit {rule.timeout}s)")
    return verdict_of(rule.name, value)


def rule_error(rule: Rule, exc: BaseException) -> Deny:
    """Rules fail closed: an error in a check refuses the call."""
    return Deny(f"rule {rule.name} raised {type(exc).__name__}: {exc}")


def failure(exc: BaseException, started: float) -> Outcome:
    return Outcome(False, error=f"{type(exc).__name__}: {exc}", duration_ms=_ms(started))


def success(value: Any, started: float) -> Outcome:
    return Outcome(True, value, duration_ms=_ms(started))


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
