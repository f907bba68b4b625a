"""The decision core: every rule of the runtime, in one I/O-free place.

A call is planned by a generator that *yields operations* (read a claim, take it, run a rule,
run the handler, sleep) and receives their results. It never touches a database, a clock
it was not given, or user code itself. The sync driver (`dar.runtime`) and the async driver
(`dar.aio`) only execute those operations, so both run exactly the same logic — the
pattern psycopg 3 uses for its protocol.

The order is fixed: input -> canonical hash -> cache lookup -> rules -> atomic claim ->
handler -> recorded outcome; each step appends its row to the event log.
"""

from __future__ import annotations

import itertools
import json
import os
import reprlib
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dar._core import canonical_json, sha256_hex_of
from dar.effects import Effect, Status
from dar.errors import CanonicalizationError, ConfigurationError
from dar.records import NewEvent, Result
from dar.redact import marker, scrub
from dar.rules import Deny, Rule, RuleContext
from dar.tools import Reconciled, Tool

# --- operations the drivers execute ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreOp:
    """Call ``store.<method>(*args, **kwargs)`` (sync or awaited); send back its result."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CheckRule:
    """Run one rule check; send back a ``Deny`` (refused, also for errors) or None."""

    rule: Rule
    input: dict[str, Any]
    ctx: RuleContext


@dataclass(frozen=True, slots=True)
class CallHandler:
    """Run the tool's handler with the call's context set; send back an ``Outcome``."""

    tool: Tool[Any]
    input: dict[str, Any]
    call_event_id: str
    correlation_id: str | None


@dataclass(frozen=True, slots=True)
class CallReconcile:
    """Ask the tool's ``reconcile`` whether a crashed call's effect happened; send back an
    ``Outcome`` whose value is a ``Reconciled``."""

    tool: Tool[Any]
    input: dict[str, Any]


Op = StoreOp | CheckRule | CallHandler | CallReconcile


@dataclass(frozen=True, slots=True)
class Outcome:
    """What running user code produced: a value, or the error it raised."""

    ok: bool
    value: Any = None
    error: str | None = None
    duration_ms: float = 0.0


# --- the call --------------------------------------------------------------------------------


@dataclass(slots=True)
class CallSpec:
    """Everything the core needs to plan one call."""

    tool: Tool[Any]
    input: Any
    rules: tuple[Rule, ...]
    owner: str
    clock: Callable[[], float]
    wait: float
    events_reader: Callable[..., Any]
    #: A hint, never a decision: has this runtime seen ``key`` completed lately?
    known_key: Callable[[str], bool] = lambda key: False
    correlation_id: str | None = None
    parent_event_id: str | None = None
    key: str | None = None
    call_event_id: str = field(default_factory=lambda: new_id())


_preview = reprlib.Repr()
_preview.maxlevel = 4
_preview.maxstring = 200
_preview.maxother = 200


def safe_preview(value: object) -> str:
    """A bounded, always-encodable text view of an input that has no canonical form."""
    try:
        text = _preview.repr(value)
    except Exception as exc:  # a hostile __repr__ must not break the refusal
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    return text[:1000].encode("utf-8", "backslashreplace").decode("utf-8")


class _Ids:
    """Event ids: a random per-process prefix and a counter, shaped as a UUID. Unique without
    drawing 16 random bytes per id (two ids per call are on the hot path); a forked child
    draws a new prefix so it never repeats its parent's ids."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count()

    def __call__(self) -> str:
        h = self.prefix + format(next(self.counter), "016x")
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


new_id: Callable[[], str] = _Ids()


def _json_text(value: Any) -> str:
    return canonical_json(value).decode("utf-8")


BACKOFF_FIRST = 0.002
BACKOFF_MAX = 0.05
LIVE_STATES = frozenset({"running", "indeterminate"})


def plan(spec: CallSpec) -> Generator[Op, Any, Result]:
    """Plan one call. Yields operations; returns the call's ``Result``."""
    tool = spec.tool

    def event(status: str, **fields: Any) -> NewEvent:
        base: dict[str, Any] = {
            "event_id": new_id(),
            "call_id": spec.call_event_id,
            "tool_name": tool.name,
            "effect": tool.effect.value,
            "status": status,
            # Whole microseconds: what both databases store exactly (the hash chain needs it).
            "created_at": round(spec.clock(), 6),
            "correlation_id": spec.correlation_id,
            "parent_event_id": spec.parent_event_id,
        }
        base.update(fields)
        return NewEvent(**base)

    # 1. Input -> canonical bytes -> hash. Nothing runs on an input without a canonical form.
    try:
        if not isinstance(spec.input, Mapping):
            raise CanonicalizationError(
                f"at $: tool input must be a JSON object, not {type(spec.input).__name__}", "$"
            )
        canon = canonical_json(spec.input)
    except CanonicalizationError as exc:
        # A tool with personal fields gets no preview: it could hold them unredacted.
        preview = (
            "(withheld: the tool redacts personal fields)"
            if tool.redactor
            else safe_preview(spec.input)
        )
        ev = event(
            Status.REJECTED.value,
            input=_json_text({"unrepresentable": preview}),
            rejection_reason=str(exc),
        )
        yield StoreOp("append", (ev,))
        return Result(Status.REJECTED, reason=str(exc), event_id=ev.event_id)
    inp = dict(spec.input)
    input_text = canon.decode("utf-8")
    input_hash = sha256_hex_of(canon)

    # Personal fields are written only as salted hashes; the key still covers the full input.
    salt = ""
    removed: list[str] = []
    if tool.redactor is not None:
        salt = yield StoreOp("redaction_salt", ())  # the store reads it once and keeps it
        redacted, removed = tool.redactor.apply(inp, salt)
        input_text = _json_text(redacted)

    def clean(text: str | None) -> str | None:
        """Messages (refusal reasons, errors) may quote a personal value."""
        return scrub(text, removed, salt)

    rules = tuple(r for r in spec.rules if r.applies(tool.name, tool.effect))
    if tool.effect is Effect.IRREVERSIBLE and not rules:
        raise ConfigurationError(
            f"tool {tool.name!r} is irreversible but no rule applies to it: "
            "add a rule (applies_to the tool, its effect, or '*') before it may run"
        )
    ctx = RuleContext(tool.name, tool.effect, spec.correlation_id, spec.events_reader)

    def record(
        status: Status, attempt: int | None = None, **fields: Any
    ) -> Generator[Op, Any, Result]:
        """Append this call's row for an answer that ran nothing, and return that answer."""
        ev = event(
            status.value,
            idempotency_key=key,
            input=input_text,
            input_hash=input_hash,
            attempt=attempt,
            **fields,
        )
        yield StoreOp("append", (ev,))
        return Result(
            status,
            event_id=ev.event_id,
            key=key,
            input_hash=input_hash,
            reason=fields.get("rejection_reason"),
            rule=fields.get("rule_name"),
            error=fields.get("error"),
        )

    def started_event(attempt: int) -> NewEvent:
        """The row of a claim taken: the call's first row, its event id the call's id."""
        return event(
            "started",
            event_id=spec.call_event_id,
            idempotency_key=key,
            input=input_text,
            input_hash=input_hash,
            attempt=attempt,
        )

    def judge() -> Generator[Op, Any, Result | None]:
        for r in rules:
            deny: Deny | None = yield CheckRule(r, inp, ctx)
            if deny is not None:
                refused = yield from record(
                    Status.REJECTED, rejection_reason=clean(deny.reason), rule_name=r.name
                )
                return refused
        return None

    def finished(outcome: Outcome, attempt: int) -> Generator[Op, Any, Result]:
        """Record a handler's outcome (and release or complete the claim)."""
        now = spec.clock()
        if outcome.ok:
            try:
                recorded = outcome.value
                if tool.redactor is not None:
                    recorded = tool.redactor.apply_output(recorded, salt, removed)
                output_text: str | None = _json_text(recorded)
                note = None
            except CanonicalizationError as exc:
                # The effect happened: record completion anyway, never run it again.
                output_text, note = None, f"output not recorded: {exc}"
            status, state, error = Status.EXECUTED, "done", note
        else:
            output_text, error = None, clean(outcome.error)
            status = Status.FAILED
            state = "failed" if tool.keep_failures else "released"
        ev = event(
            status.value,
            event_id=spec.call_event_id if key is None else new_id(),
            idempotency_key=key,
            input=input_text,
            input_hash=input_hash,
            output=output_text,
            error=error,
            attempt=attempt,
            duration_ms=outcome.duration_ms,
            completed_at=round(now, 6),
        )
        if key is None:
            yield StoreOp("append", (ev,))
        else:
            expires = None if tool.window is None else now + tool.window
            yield StoreOp("finish", (key, spec.owner, state, output_text, error, now, expires, ev))
        return Result(
            status,
            output=outcome.value if outcome.ok else None,
            error=error,
            event_id=ev.event_id,
            key=key,
            input_hash=input_hash,
        )

    # 2. Reads: no key, no claim; judged and run every time, and still logged.
    key: str | None = None
    if not tool.effect.idempotent:
        refused = yield from judge()
        if refused is not None:
            return refused
        outcome = yield CallHandler(tool, inp, spec.call_event_id, spec.correlation_id)
        return (yield from finished(outcome, 1))

    if spec.key is not None:
        key = spec.key
        if tool.redactor is not None:  # an explicit key may spell out a personal value
            key = f"{tool.name}:{marker(salt, key)}"
    elif tool.key is not None:
        try:
            key = str(tool.key(inp))
            if tool.redactor is not None:  # a custom key may spell out a personal value
                key = f"{tool.name}:{marker(salt, key)}"
        except Exception as exc:
            reason = f"key function of {tool.name!r} failed: {type(exc).__name__}: {exc}"
            return (yield from record(Status.REJECTED, rejection_reason=clean(reason)))
    else:
        key = f"{tool.name}:{input_hash}"

    # 3. Cache lookup, waiting, crash recovery; then rules and the atomic claim.
    judged = False
    waited = 0.0
    delay = BACKOFF_FIRST
    first = True
    attempt = 1
    while True:
        now = spec.clock()
        hit = event(
            Status.CACHED.value, idempotency_key=key, input=input_text, input_hash=input_hash
        )
        if first and not rules and not spec.known_key(key):
            # With no rule to run between them, the look-up and the claim are one step:
            # the store claims the key if it is free, or returns the claim that holds it.
            # (A key this runtime saw completed is looked up plainly: most likely a hit,
            # and a plain look-up is the cheaper statement for one.)
            first = False
            started_ev = started_event(1)
            won, claim = yield StoreOp(
                "claim_or_lookup",
                (
                    key,
                    tool.name,
                    input_hash,
                    spec.owner,
                    now + tool.lease,
                    now,
                    started_ev,
                    hit,
                ),
            )
            if won:
                break
        else:
            claim, _logged = yield StoreOp("lookup", (key, input_hash, now, hit))
        fresh = claim is not None and (claim.expires_at is None or claim.expires_at > now)
        if claim is not None and claim.state == "done" and fresh and claim.input_hash == input_hash:
            # A hit: the store has logged (or buffered) its row.
            output = None if claim.output is None else json.loads(claim.output)
            return Result(
                Status.CACHED, output=output, event_id=hit.event_id, key=key, input_hash=input_hash
            )
        live = claim is not None and (
            claim.state in LIVE_STATES or (claim.state in ("done", "failed") and fresh)
        )
        if claim is not None and live and claim.input_hash != input_hash:
            reason = (
                f"key {key!r} was used with input hash {claim.input_hash}; "
                f"this call has {input_hash}"
            )
            return (yield from record(Status.CONFLICT, claim.attempts, rejection_reason=reason))
        if claim is not None and claim.state == "failed" and fresh:
            return (yield from record(Status.FAILED, claim.attempts, error=claim.error))
        if claim is not None and claim.state == "indeterminate":
            reason = (
                f"a call with key {key!r} crashed mid-effect; "
                f"resolve it with `dar resolve {key} --executed/--not-executed`"
            )
            return (
                yield from record(Status.INDETERMINATE, claim.attempts, rejection_reason=reason)
            )
        reclaim_with_reconcile = False
        if claim is not None and claim.state == "running":
            assert claim.lease_until is not None
            if claim.lease_until > now:
                if waited >= spec.wait:
                    return (
                        yield from record(
                            Status.IN_PROGRESS,
                            claim.attempts,
                            rejection_reason=f"still running after waiting {waited:.3f}s",
                        )
                    )
                # The store may wake us early (Postgres LISTEN/NOTIFY); polling is the fallback.
                waited += yield StoreOp("wait", (key, min(delay, spec.wait - waited)))
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            # The lease ran out with no outcome: its worker died (or overran the lease).
            if not tool.effect.blind_retry_safe:
                if tool.reconcile is None:
                    ev = event(
                        Status.INDETERMINATE.value,
                        idempotency_key=key,
                        input=input_text,
                        input_hash=input_hash,
                        attempt=claim.attempts,
                        rejection_reason="lease expired with no recorded outcome",
                    )
                    moved = yield StoreOp("mark", (key, claim.version, "indeterminate", ev))
                    if not moved:
                        continue
                    return Result(
                        Status.INDETERMINATE,
                        event_id=ev.event_id,
                        key=key,
                        input_hash=input_hash,
                        reason="lease expired with no recorded outcome",
                    )
                reclaim_with_reconcile = True
        if not judged and not reclaim_with_reconcile:
            refused = yield from judge()
            if refused is not None:
                return refused
            judged = True
        now = spec.clock()
        started_ev = started_event((claim.attempts if claim is not None else 0) + 1)
        won = yield StoreOp(
            "claim",
            (
                key,
                tool.name,
                input_hash,
                spec.owner,
                now + tool.lease,
                now,
                None if claim is None else claim.version,
                started_ev,
            ),
        )
        if not won:
            continue  # someone else moved first: look again
        attempt = started_ev.attempt or 1
        if reclaim_with_reconcile:
            rec = yield CallReconcile(tool, inp)
            verdict = rec.value if rec.ok else None
            if isinstance(verdict, Reconciled) and verdict.executed:
                result = yield from finished(
                    Outcome(True, verdict.output, duration_ms=rec.duration_ms), attempt
                )
                return Result(
                    Status.CACHED,
                    output=result.output,
                    event_id=result.event_id,
                    key=key,
                    input_hash=input_hash,
                    error=result.error,
                    extra={"reconciled": True},
                )
            if not isinstance(verdict, Reconciled):
                error = rec.error or (
                    f"reconcile returned {type(verdict).__name__}, not Reconciled"
                )
                ev = event(
                    Status.INDETERMINATE.value,
                    idempotency_key=key,
                    input=input_text,
                    input_hash=input_hash,
                    attempt=attempt,
                    error=error,
                )
                yield StoreOp(
                    "finish",
                    (key, spec.owner, "indeterminate", None, error, spec.clock(), None, ev),
                )
                return Result(
                    Status.INDETERMINATE,
                    event_id=ev.event_id,
                    key=key,
                    input_hash=input_hash,
                    error=error,
                )
            # Reconciled(executed=False): the effect did not happen. We hold the claim; the
            # call is judged by the rules like any fresh call, then runs.
            refused = yield from judge()
            if refused is not None:
                yield StoreOp(
                    "finish",
                    (
                        key,
                        spec.owner,
                        "released",
                        None,
                        None,
                        spec.clock(),
                        None,
                        event(
                            "released", idempotency_key=key, input_hash=input_hash, attempt=attempt
                        ),
                    ),
                )
                return refused
        break

    # 4. The effect, once.
    outcome = yield CallHandler(tool, inp, spec.call_event_id, spec.correlation_id)
    return (yield from finished(outcome, attempt))
