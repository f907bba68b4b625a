"""Dry runs: everything a call would do except the effect, and a commit that runs exactly
that call only if nothing it depended on has moved.

`dry_run` parses, validates, reads the key's state, runs the rules and the tool's
`simulate`, and writes one `planned` row; it never calls the handler. `commit` refuses a
plan (`stale`) when the rules in force, the key's state or the clock have moved since,
and otherwise runs the planned input through the ordinary call plan, so every guarantee of
a live call holds for it too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from dar._core import canonical_json, sha256_hex_of
from dar.core.decide import (
    Call,
    CallSpec,
    first_refusal,
    input_digest,
    json_output,
    prepare,
    preview_guards,
    rules_for,
)
from dar.core.grants import fingerprint
from dar.core.ops import Append, CallSimulate, GetClaim, Ops
from dar.core.rows import CallRows
from dar.core.states import ClaimState, EventKind
from dar.core.verdict import Verdict, classify
from dar.effects import Status
from dar.records import Claim, Result
from dar.rules import Deny, Rule
from dar.tools import Tool

DEFAULT_TTL = 600.0

#: What a plan says the call would do, by the key's state.
_WOULD = {
    Verdict.HIT: "answer from the record",
    Verdict.CONFLICT: "conflict with the first call of its key",
    Verdict.RUNNING: "wait for an identical call in progress",
    Verdict.INDETERMINATE: "wait for an operator (indeterminate)",
    Verdict.EXPIRED: "wait for an operator (indeterminate)",
    Verdict.RECONCILE: "ask the tool's reconcile first",
    Verdict.KEPT_FAILURE: "answer with the recorded failure",
}


@dataclass(frozen=True, slots=True)
class Plan:
    """What one call would do, and what its commit depends on."""

    plan_id: str
    tool: str
    arguments: str  # the canonical JSON of the input: exactly what a commit runs
    given_key: str | None  # the key given to `plan`, if any (a commit uses it again)
    input_hash: str
    key: str | None
    verdict: str  # what it would do: "execute", "be refused", "need a person's approval", ...
    reasons: tuple[str, ...]
    preview: Any
    rules_fingerprint: str
    key_state: str
    correlation_id: str | None
    created_at: float
    expires_at: float
    #: The reads the plan was made on (before the first effect of a search's path):
    #: ``(tool, canonical arguments, digest of the output)``. A commit reads each again;
    #: another answer makes it stale.
    reads: tuple[tuple[str, str, str], ...] = ()
    #: The key of the plan before it on a search's path: it commits only after that one ran.
    after: str | None = None
    search_id: str | None = None  # the search that chose it: its commit joins that group

    def to_json(self) -> str:
        """The plan as JSON text, to commit from another process after review."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        values = json.loads(text)
        values["reasons"] = tuple(values["reasons"])
        values["reads"] = tuple(tuple(r) for r in values.get("reads", ()))
        return cls(**values)


def refused_plan(spec: CallSpec, refused: Result, ttl: float) -> Plan:
    """The plan of an input that is refused before anything else (not a JSON object, not
    fitting the signature): it would be refused, and a commit would be refused again."""
    now = spec.clock()
    return Plan(
        plan_id=spec.call_event_id,
        tool=spec.tool.name,
        arguments="",
        given_key=spec.key,
        input_hash=refused.input_hash or "",
        key=refused.key,
        verdict="be refused",
        reasons=(refused.reason or "",),
        preview=None,
        rules_fingerprint="",
        key_state="",
        correlation_id=spec.correlation_id,
        created_at=now,
        expires_at=now + ttl,
    )


def as_result(plan: Plan) -> Result:
    """A dry-run runtime's answer to a call: planned, with the preview as output."""
    text = None if plan.preview is None else canonical_json(plan.preview).decode("utf-8")
    return Result(
        Status.PLANNED,
        output=plan.preview,
        output_json=text,
        reason="; ".join((plan.verdict, *plan.reasons)),
        event_id=plan.plan_id,
        key=plan.key,
        input_hash=plan.input_hash,
        extra={"plan": plan},
    )


def searched(plan: Plan, simulated: bool) -> Result:
    """A search's answer to an effect: planned (a tool with no ``simulate`` gets a preview
    saying so), or refused when the plan says it would be (``score`` sees why)."""
    if plan.verdict != "be refused":
        if simulated:
            return as_result(plan)
        said = {"no preview": f"{plan.tool} has no simulate= to show what it would do"}
        return replace(as_result(plan), output=said)
    return Result(
        Status.REJECTED,
        reason="; ".join(plan.reasons),
        event_id=plan.plan_id,
        key=plan.key,
        input_hash=plan.input_hash,
        extra={"plan": plan},
    )


def output_digest(result: Result) -> str:
    """What a plan remembers of a read it depends on: the hash of its recorded output."""
    return sha256_hex_of(b"" if result.output_json is None else result.output_json.encode("utf-8"))


def key_state(claim: Claim | None) -> str:
    """What a commit compares: the claim's state and version (any write moves it)."""
    return "free" if claim is None else f"{claim.state}@{claim.version}"


def dry_run(spec: CallSpec, ttl: float = DEFAULT_TTL) -> Ops[Plan]:
    """Plan one call without its effect; an input that would be refused is refused (and
    logged) as for a live call."""
    call = yield from prepare(spec)
    if isinstance(call, Result):
        return refused_plan(spec, call, ttl)
    claim: Claim | None = None if call.key is None else (yield GetClaim(call.key))
    now = spec.clock()
    tool = call.tool
    verdict = Verdict.TAKE
    if call.key is not None:
        verdict = classify(
            claim,
            now,
            call.input_hash,
            blind_retry_safe=tool.effect.blind_retry_safe,
            can_reconcile=tool.reconcile is not None,
        )
    would, reasons = _WOULD.get(verdict, "execute"), []
    if verdict is Verdict.TAKE:
        refused = yield from first_refusal(call)
        if refused is not None:
            rule, said = refused
            would = "be refused" if isinstance(said, Deny) else "need a person's approval"
            reasons.append(f"{rule.name}: {call.clean(said.reason)}")
        else:  # the guards, as they would judge it now (nothing is reserved)
            guarded = yield from preview_guards(call)
            if guarded is not None:
                would = guarded[0]
                reasons.append(guarded[1])
    preview, preview_text = yield from simulate(call)
    row = call.row(
        EventKind.PLANNED,
        event_id=spec.call_event_id,
        output=preview_text,
        rejection_reason="would " + would + "".join(f"; {r}" for r in reasons),
    )
    yield Append(row)
    return Plan(
        plan_id=spec.call_event_id,
        tool=tool.name,
        arguments=call.canonical,
        given_key=spec.key,
        input_hash=call.input_hash,
        key=call.key,
        verdict=would,
        reasons=tuple(reasons),
        preview=preview,
        rules_fingerprint=fingerprint(call.rules),
        key_state=key_state(claim),
        correlation_id=spec.correlation_id,
        created_at=now,
        expires_at=now + ttl,
    )


def simulate(call: Call) -> Ops[tuple[Any, str | None]]:
    """The tool's preview, as a value and as the row records it (None without one)."""
    if call.tool.simulate is None:
        return None, None
    outcome = yield CallSimulate(call.tool, call.kwargs)
    if not outcome.ok:
        return _failed(outcome.error)
    try:
        value = json_output(outcome.value)
        if call.tool.redactor is not None:
            value = call.tool.redactor.apply_output(value, call.salt, call.removed)
        return value, canonical_json(value).decode("utf-8")
    except Exception as exc:  # a preview with no JSON form: the plan still stands
        return _failed(f"the preview has no JSON form: {type(exc).__name__}: {exc}")


def _failed(error: str | None) -> tuple[Any, str]:
    value = {"simulate failed": error}
    return value, canonical_json(value).decode("utf-8")


def commit(
    plan: Plan,
    tool: Tool[Any],
    rules: tuple[Rule, ...],
    rows: CallRows,
    live: Callable[[str], Ops[Result]],
    read: Callable[[str, str], Ops[Result]] | None = None,
) -> Ops[Result]:
    """Run the planned input once, unless the plan is stale; ``live(arguments)`` is the
    ordinary plan of the call, ``read(tool, arguments)`` the call of a read it was made on."""
    now = rows.clock()
    why = None
    if now > plan.expires_at:
        why = f"the plan expired {now - plan.expires_at:.0f}s ago"
    elif tool.name != plan.tool:
        why = f"the plan is for {plan.tool}, not {tool.name}"
    elif fingerprint(rules_for(tool, rules)) != plan.rules_fingerprint:
        why = "the rules in force changed since the plan"
    elif plan.key is not None:
        claim = yield GetClaim(plan.key)
        if key_state(claim) != plan.key_state:
            why = f"the key's state moved from {plan.key_state} to {key_state(claim)}"
    if why is None and input_digest(tool, plan.arguments) != plan.input_hash:
        why = "the plan's arguments do not match its input hash"
    if why is None and read is not None:
        why = yield from path_moved(plan, read)
    if why is None:
        return (yield from live(plan.arguments))
    ev = rows.row(
        EventKind.STALE,
        idempotency_key=plan.key,
        input=plan.arguments if tool.redactor is None else None,
        input_hash=plan.input_hash,
        rejection_reason=f"plan {plan.plan_id} is stale: {why}",
    )
    yield Append(ev)
    return Result(
        Status.STALE,
        reason=ev.rejection_reason,
        event_id=ev.event_id,
        key=plan.key,
        input_hash=plan.input_hash,
    )


def path_moved(plan: Plan, read: Callable[[str, str], Ops[Result]]) -> Ops[str | None]:
    """Why a search's plan may not run now: the plan before it on the path has not run,
    or a read it was made on answers otherwise (or fails); None when neither."""
    if plan.after is not None:
        before = yield GetClaim(plan.after)
        if before is None or before.state != ClaimState.DONE.value:
            return f"the call before it on the path ({plan.after}) has not run"
    for name, arguments, digest in plan.reads:
        again = yield from read(name, arguments)
        if not again.ok:
            return f"the read {name} {arguments} failed: {again.error or again.reason}"
        if output_digest(again) != digest:
            return f"the read {name} {arguments} answers otherwise since the plan"
    return None
