"""A reference model of the runtime's semantics, written from the README, not the code.

Plain Python: a dict of keys and their outcomes, and a count of how often each key's effect
was allowed to happen. The stateful test drives the real runtime and this model side by
side and compares them after every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dar


def effect_id(tool: str, v: int) -> str:
    return f"{tool}:{v}"


@dataclass(frozen=True)
class ToolSpec:
    """How a tool of the test behaves (the real tool is built from this)."""

    name: str
    effect: dar.Effect
    window: float | None
    lease: float
    reconciles: bool = False


@dataclass
class KeyState:
    state: str  # running | done | released | indeterminate
    input_hash: str
    output: Any = None
    expires_at: float | None = None
    lease_until: float | None = None


@dataclass
class Expect:
    """What the model says one call returns."""

    status: dar.Status
    output: Any = None
    raises: type[BaseException] | None = None


@dataclass
class Model:
    now: float
    keys: dict[str, KeyState] = field(default_factory=dict)
    #: per effect id (``tool:v``): how many times the handler ran (its effect happened).
    effects: dict[str, int] = field(default_factory=dict)
    #: (tool name, input value) pairs refused by the deny rules in force.
    denied: set[tuple[str, int]] = field(default_factory=set)
    irreversible_rule: bool = True
    #: what `reconcile` answers: None (not executed), an output (executed), or "raise".
    reconcile_answer: Any = None

    def has_rule(self, tool: ToolSpec) -> bool:
        """Does any rule in force apply to this tool? (A deny rule for one value applies
        to the tool's every call; it only refuses that value.)"""
        return self.irreversible_rule or any(name == tool.name for name, _ in self.denied)

    def key_of(self, tool: ToolSpec, inp: dict[str, Any], explicit: str | None) -> str:
        # A given key is scoped to its tool (the store keeps it hashed: see `real_key`).
        return f"{tool.name}:key:{explicit}" if explicit else f"{tool.name}:{dar.input_hash(inp)}"

    def effect(self, tool: ToolSpec, inp: dict[str, Any]) -> None:
        eid = effect_id(tool.name, inp["v"])
        self.effects[eid] = self.effects.get(eid, 0) + 1

    def runs(self, tool: ToolSpec, inp: dict[str, Any]) -> int:
        return self.effects.get(effect_id(tool.name, inp["v"]), 0)

    def _run(
        self, tool: ToolSpec, key: str, inp: dict[str, Any], fail: bool, output: Any
    ) -> Expect:
        """The handler runs: the effect happens (once more) and the outcome is recorded."""
        self.effect(tool, inp)
        if tool.effect is dar.Effect.READ:
            return Expect(
                dar.Status.FAILED if fail else dar.Status.EXECUTED, None if fail else output
            )
        if fail:
            self.keys[key] = KeyState("released", dar.input_hash(inp))
            return Expect(dar.Status.FAILED)
        expires = None if tool.window is None else self.now + tool.window
        self.keys[key] = KeyState("done", dar.input_hash(inp), output, expires_at=expires)
        return Expect(dar.Status.EXECUTED, output)

    def call(
        self,
        tool: ToolSpec,
        inp: dict[str, Any],
        *,
        explicit: str | None = None,
        fail: bool = False,
        output: Any = None,
    ) -> Expect:
        """One sequential call that completes (no crash). ``output`` is what the handler
        would return if it ran."""
        h = dar.input_hash(inp)
        denied = (tool.name, inp["v"]) in self.denied
        if tool.effect is dar.Effect.IRREVERSIBLE and not self.has_rule(tool):
            return Expect(dar.Status.REJECTED, raises=dar.ConfigurationError)
        if tool.effect is dar.Effect.READ:
            key = f"read:{tool.name}:{h}"
            return (
                Expect(dar.Status.REJECTED) if denied else self._run(tool, key, inp, fail, output)
            )
        key = self.key_of(tool, inp, explicit)
        c = self.keys.get(key)
        fresh = c is not None and (c.expires_at is None or c.expires_at > self.now)
        if c is not None and c.state == "done" and fresh and c.input_hash == h:
            return Expect(dar.Status.CACHED, c.output)  # replays are not judged again
        live = c is not None and (
            c.state in ("running", "indeterminate") or (c.state == "done" and fresh)
        )
        if c is not None and live and c.input_hash != h:
            return Expect(dar.Status.CONFLICT)
        if c is not None and c.state == "indeterminate":
            if tool.reconciles:  # asked again at every call, until it knows
                return self._after_crash(tool, key, c, inp, denied, fail, output)
            return Expect(dar.Status.INDETERMINATE)
        if c is not None and c.state == "running":
            assert c.lease_until is not None
            if c.lease_until > self.now:
                return Expect(dar.Status.IN_PROGRESS)  # the test's runtimes do not wait
            if not tool.effect.blind_retry_safe:
                return self._after_crash(tool, key, c, inp, denied, fail, output)
        if denied:
            return Expect(dar.Status.REJECTED)
        return self._run(tool, key, inp, fail, output)

    def _after_crash(
        self,
        tool: ToolSpec,
        key: str,
        c: KeyState,
        inp: dict[str, Any],
        denied: bool,
        fail: bool,
        output: Any,
    ) -> Expect:
        """An external effect whose worker died: indeterminate, or what reconcile says."""
        h = dar.input_hash(inp)
        if not tool.reconciles:
            c.state = "indeterminate"
            return Expect(dar.Status.INDETERMINATE)
        answer = self.reconcile_answer
        if answer == "raise":
            c.state = "indeterminate"
            return Expect(dar.Status.INDETERMINATE)
        if answer is not None:
            self.keys[key] = KeyState(
                "done",
                h,
                answer,
                expires_at=None if tool.window is None else self.now + tool.window,
            )
            return Expect(dar.Status.CACHED, answer)
        # Not executed: the call goes on as a fresh one.
        if denied:
            c.state = "released"
            return Expect(dar.Status.REJECTED)
        return self._run(tool, key, inp, fail, output)

    def crash(
        self, tool: ToolSpec, inp: dict[str, Any], point: str, *, explicit: str | None = None
    ) -> bool:
        """A worker claims the call and dies at ``point``. Returns whether it got as far as
        claiming (the call must have been claimable)."""
        before = self.call_is_claimable(tool, inp, explicit)
        if not before:
            return False
        key = self.key_of(tool, inp, explicit)
        self.keys[key] = KeyState("running", dar.input_hash(inp), lease_until=self.now + tool.lease)
        if point in ("in_handler", "before_outcome"):
            self.effect(tool, inp)
        return True

    def call_is_claimable(self, tool: ToolSpec, inp: dict[str, Any], explicit: str | None) -> bool:
        """Would a call get as far as running its handler with no reconcile involved?"""
        if tool.effect is dar.Effect.READ or (tool.name, inp["v"]) in self.denied:
            return False
        if tool.effect is dar.Effect.IRREVERSIBLE and not self.has_rule(tool):
            return False
        key = self.key_of(tool, inp, explicit)
        c = self.keys.get(key)
        if c is None or c.state == "released":
            return True
        fresh = c.expires_at is None or c.expires_at > self.now
        if c.state == "done":
            return not fresh  # an expired record: the key may be taken again, by any input
        if c.input_hash != dar.input_hash(inp):
            return False  # a running or indeterminate claim is live: another input conflicts
        if c.state == "running":
            return bool(
                c.lease_until is not None
                and c.lease_until <= self.now
                and tool.effect.blind_retry_safe
            )
        return False

    def resolve(self, key: str, executed: bool, output: Any) -> bool:
        c = self.keys.get(key)
        if c is None or c.state not in ("indeterminate", "running"):
            return False
        if executed:
            self.keys[key] = KeyState("done", c.input_hash, output, expires_at=None)
        else:
            c.state = "released"
        return True
