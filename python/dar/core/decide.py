"""The decision core: every rule of the runtime, in one I/O-free place.

A call is planned by small generators that *yield operations* (`dar.core.ops`: read a claim,
take it, run a rule, run the handler, wait) and receive their answers. They never touch a
database, a clock they were not given, or user code themselves. The sync driver
(`dar.runtime.sync`) and the async driver (`dar.runtime.aio`) only execute those operations, so both
run exactly the same logic — the pattern psycopg 3 uses for its protocol.

The order is fixed: input -> canonical hash -> cache lookup -> rules -> atomic claim ->
handler -> recorded outcome; each step appends its row to the event log. `decide_call` composes
the stages: `prepare` (input, hash, redaction, key), `acquire` (look-up, waiting, crash
recovery, rules, the claim), `reconcile` (a crashed call's effect, asked of the tool) and
`run` (the handler, once, and its recorded outcome).
"""

from __future__ import annotations

import json
import re
import reprlib
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from pydantic_core import PydanticSerializationError

from dar._core import canonical_json, canonical_json_from_text, sha256_hex_of
from dar.context import CallInfo
from dar.core import guards
from dar.core.grants import always_ask, binding, fingerprint, signed_by
from dar.core.ids import new_id
from dar.core.ops import (
    Append,
    CallHandler,
    CallReconcile,
    CheckGuards,
    CheckRule,
    Embed,
    Finish,
    GuardDecision,
    GuardScan,
    LogFilter,
    Lookup,
    Mark,
    Ops,
    Outcome,
    ReadLog,
    RedactionSalt,
    RequestApproval,
    ReserveGuards,
    SettleGuards,
    Take,
    TakeOrLookup,
    UseGrant,
    Wait,
)
from dar.core.rows import CallRows
from dar.core.states import ClaimState, EventKind
from dar.core.verdict import Verdict, classify
from dar.effects import Effect, Status
from dar.errors import CanonicalizationError, ConfigurationError
from dar.guards import Budget, Similar
from dar.records import Approval, Claim, Event, NewEvent, Result
from dar.redact import Redactor, marker, scrub
from dar.rules import Deny, NeedsApproval, Rule, RuleContext
from dar.signature import ArgumentError, json_path, to_json
from dar.tools import Reconciled, Tool

Plan = Ops[Any]

WITHHELD = "(withheld: the tool redacts personal fields)"
USED = "an identical call used the approval and has not claimed the key yet"
BACKOFF_FIRST = 0.002
BACKOFF_MAX = 0.05


@dataclass(slots=True)
class CallSpec:
    """Everything the core needs to plan one call."""

    tool: Tool[Any]
    input: Any
    rules: tuple[Rule, ...]
    owner: str
    clock: Callable[[], float]
    wait: float
    #: ``events(**filters)`` for rules that read the log (sync, or awaitable on asyncio).
    events_reader: Callable[..., Any]
    #: A hint, never a decision: has this runtime seen ``key`` completed lately?
    known_key: Callable[[str], bool] = lambda key: False
    correlation_id: str | None = None
    parent_event_id: str | None = None
    key: str | None = None
    call_event_id: str = field(default_factory=new_id)
    #: ``DAR_APPROVAL_SECRET``: grants must carry its HMAC to be used.
    approval_secret: str | None = None
    #: ``key`` was made by the runtime (a saga's step), not given by a tool or a caller:
    #: it is stored where no given key can reach (`own_key`).
    own_key: bool = False


@dataclass(slots=True)
class Call:
    """A call whose input has a canonical form: what every later stage works from."""

    spec: CallSpec
    rows: CallRows
    canonical: str  # the input's RFC 8785 form: everything later is derived from it
    input_text: str  # what the log holds (redacted)
    input_hash: str  # of the full canonical input
    rules: tuple[Rule, ...]
    salt: str = ""
    removed: list[str] = field(default_factory=list)
    key: str | None = None
    #: The handler's keyword arguments, validated against its signature.
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: The hash of the input as the caller made the call: the claim's, even once a
    #: person's edit (`use_edit`) has swapped the input the call runs on.
    request_hash: str = ""
    #: How a person edited the call at approval (``Result.extra["edited"]``), if they did.
    edit: dict[str, Any] | None = None
    #: The call holds shares of its guards' scopes (`guard`): given back if it does not run.
    reserved: bool = False
    #: Its shares are a crashed attempt's, adopted by the call that reconciles its key:
    #: found by the key, not by this call's event id.
    adopted: bool = False
    #: Similar guards whose hold a person approved for this call.
    approved: frozenset[str] = frozenset()
    #: ``(guard name, reason)`` of a guard that lets the call run marked (``then="flag"``).
    flag: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        self.request_hash = self.request_hash or self.input_hash

    @property
    def tool(self) -> Tool[Any]:
        return self.spec.tool

    @property
    def input(self) -> dict[str, Any]:
        """A fresh copy of exactly the input that was hashed and logged: whatever a rule or
        a key function does to its copy, the handler still runs on the canonical input."""
        value: dict[str, Any] = json.loads(self.canonical)
        return value

    def clean(self, text: str | None) -> str | None:
        """Messages (refusal reasons, errors) may quote a personal value."""
        return scrub(text, self.removed, self.salt)

    def row(self, kind: EventKind, **fields: Any) -> NewEvent:
        """A row of this call that carries its key and input."""
        return self.rows.row(
            kind,
            idempotency_key=self.key,
            input=self.input_text,
            input_hash=self.input_hash,
            **fields,
        )

    def result(self, status: Status, event: NewEvent, **fields: Any) -> Result:
        if self.edit is not None:
            fields["extra"] = {**fields.get("extra", {}), "edited": self.edit}
        return Result(
            status, event_id=event.event_id, key=self.key, input_hash=self.input_hash, **fields
        )


@dataclass(frozen=True, slots=True)
class Acquired:
    """The claim is this call's: run the handler (after asking reconcile, if so)."""

    attempt: int
    reconcile: bool


def decide_call(spec: CallSpec) -> Ops[Result]:
    """Decide one call. Yields operations; returns the call's ``Result``."""
    call = yield from prepare(spec)
    if isinstance(call, Result):
        return call
    if not call.tool.effect.idempotent:
        # Reads: no key, no claim; judged and run every time, and still logged.
        refused = yield from judge(call)
        if isinstance(refused, Result):
            return refused
        guarded = yield from guard(call, None)
        if isinstance(guarded, Result):
            return guarded
        return (yield from settled(call, (yield from run(call, 1))))
    acquired = yield from acquire(call)
    if isinstance(acquired, Result):
        return acquired
    if acquired.reconcile:
        yield from adopt(call)
        answered = yield from reconcile(call, acquired.attempt)
        if answered is not None:
            return (yield from settled(call, answered))
    return (yield from settled(call, (yield from run(call, acquired.attempt))))


# --- prepare: input -> canonical bytes -> hash -> redaction -> key ---------------------------


def prepare(spec: CallSpec) -> Ops[Call | Result]:
    """Nothing runs on an input without a canonical form or that does not fit the handler's
    signature; an irreversible tool with no rule is a configuration error; the key is
    derived last (a failing key function refuses)."""
    tool = spec.tool
    rows = CallRows(
        spec.call_event_id,
        tool.name,
        tool.effect.value,
        spec.correlation_id,
        spec.parent_event_id,
        spec.clock,
    )
    try:
        canon = canonical_input(spec.input)
        if tool.coerce:
            with suppress(ArgumentError):  # else refused below, with every problem named
                canon = coerced(tool, canon)
    except CanonicalizationError as exc:  # also a coerced value with no JSON form
        return (yield from unrepresentable(spec, rows, exc))
    rules = rules_for(tool, spec.rules)
    if tool.effect is Effect.IRREVERSIBLE and not rules:
        raise ConfigurationError(unruled(tool.name))
    text = canon.decode("utf-8")
    call = Call(spec, rows, text, text, sha256_hex_of(canon), rules)
    if tool.redactor is not None:
        # Personal fields are written only as salted hashes; the key covers the full input.
        call.salt = yield RedactionSalt()
        try:
            redacted, call.removed = tool.redactor.apply(call.input, call.salt)
            call.input_text = canonical_json(redacted).decode("utf-8")
        except Exception as exc:
            call.input_text = canonical_json({"unrepresentable": WITHHELD}).decode("utf-8")
            reason = f"redaction of the input failed: {type(exc).__name__}"
            return (yield from record(call, Status.REJECTED, rejection_reason=reason))
    try:
        call.kwargs = tool.signature.validate(text, coerce=tool.coerce)
    except ArgumentError as exc:
        invalid = call.clean(f"invalid arguments: {exc}")
        return (yield from record(call, Status.REJECTED, rejection_reason=invalid))
    if tool.effect.idempotent:
        refused = yield from derive_key(call)
        if refused is not None:
            return refused
    return call


def coerced(tool: Tool[Any], canon: bytes) -> bytes:
    """Lax validation first, for a ``coerce=True`` tool: the coerced arguments are what is
    hashed, keyed and run."""
    return canonical_json(tool.signature.coerced(canon.decode("utf-8")))


def input_digest(tool: Tool[Any], value: Any) -> str | None:
    """The input hash a call of ``tool`` on ``value`` gets, or None when it has none (it
    would be refused): how replay matches a call to the record without running it."""
    try:
        canon = canonical_input(value)
        if tool.coerce:
            canon = coerced(tool, canon)
    except (CanonicalizationError, ArgumentError):
        return None
    return sha256_hex_of(canon)


def rules_for(tool: Tool[Any], rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    """The rules that judge calls of ``tool``, in order (``approval=True`` adds one)."""
    found = tuple(r for r in rules if r.applies(tool.name, tool.effect))
    return (*found, always_ask(tool.name)) if tool.approval else found


def unruled(tool_name: str) -> str:
    return (
        f"tool {tool_name!r} is irreversible but no rule applies to it: "
        "add a rule (applies_to the tool, its effect, or '*') before it may run"
    )


def canonical_input(value: Any) -> bytes:
    """The arguments' canonical JSON: from a mapping, or from JSON text as models send it
    (blank text and None mean no arguments). Anything but a JSON object is refused."""
    if value is None:
        return b"{}"
    if isinstance(value, (str, bytes)):
        if not value.strip():
            return b"{}"
        canon = canonical_json_from_text(value)
        if not canon.startswith(b"{"):
            kind = {b"[": "an array", b'"': "a string", b"n": "null", b"t": "a boolean"}
            name = kind.get(canon[:1], "a boolean" if canon == b"false" else "a number")
            raise CanonicalizationError(f"at $: arguments must be a JSON object, not {name}", "$")
    elif isinstance(value, Mapping):
        canon = canonical_json(value)
    else:
        raise CanonicalizationError(
            f"at $: tool input must be a JSON object, not {type(value).__name__}", "$"
        )
    if b"\\u0000" in canon and _NUL.search(canon):
        where = json_path(_nul_location(json.loads(canon)) or ())
        raise CanonicalizationError(
            f"at {where}: the input contains a NUL character (\\u0000), which the log "
            "cannot store on every database",
            where,
        )
    return canon


#: An escaped NUL in canonical JSON: ``\u0000`` after an even number of backslashes (a
#: text that spells ``\u0000`` is ``\\u0000`` there, and is no NUL).
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _nul_location(value: Any, loc: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    """Where the first string or name holding a NUL character is, depth first."""
    if isinstance(value, str):
        return loc if "\x00" in value else None
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for name, item in items:
        if isinstance(name, str) and "\x00" in name:
            return (*loc, name)
        found = _nul_location(item, (*loc, name))
        if found is not None:
            return found
    return None


def unknown_tool(rows: CallRows, arguments: Any, known: list[str]) -> Ops[Result]:
    """Refuse a call to a tool name no one registered: logged under the name as given."""
    listed = ", ".join(known[:50]) or "none are registered"
    reason = f"unknown tool {rows.tool_name!r}; the known tools are: {listed}"
    ev = rows.row(
        EventKind.REJECTED,
        input=canonical_json({"unrepresentable": safe_preview(arguments)}).decode("utf-8"),
        rejection_reason=reason,
    )
    yield Append(ev)
    return Result(Status.REJECTED, reason=reason, event_id=ev.event_id)


def unrepresentable(spec: CallSpec, rows: CallRows, exc: CanonicalizationError) -> Ops[Result]:
    """Refuse an input with no canonical form, logging a bounded preview of it."""
    # A tool with personal fields gets no preview: it could hold them unredacted.
    preview = WITHHELD if spec.tool.redactor else safe_preview(spec.input)
    reason = str(exc)
    if spec.tool.redactor is not None:
        # The refusal can quote the value (a number out of range): a personal one is
        # replaced here as everywhere else, or the whole problem is withheld.
        salt: str = yield RedactionSalt()
        reason = withheld(spec.tool.redactor, spec.input, exc, salt)
    ev = rows.row(
        EventKind.REJECTED,
        input=canonical_json({"unrepresentable": preview}).decode("utf-8"),
        rejection_reason=reason,
    )
    yield Append(ev)
    return Result(Status.REJECTED, reason=reason, event_id=ev.event_id)


def withheld(redactor: Redactor, value: Any, exc: CanonicalizationError, salt: str) -> str:
    """The refusal of an input with no canonical form, with the tool's personal values
    replaced; when they cannot be told apart, the problem's details are withheld."""
    try:
        raw = json.loads(value) if isinstance(value, (str, bytes)) else value
        _redacted, removed = redactor.apply(raw, salt)
    except Exception:
        return (
            f"at {exc.path}: the input has no canonical JSON form "
            "(details withheld: the tool redacts personal fields)"
        )
    return scrub(str(exc), removed, salt) or str(exc)


def derive_key(call: Call) -> Ops[Result | None]:
    """Set ``call.key``: ``tool:input_hash``, or from a given key (explicit, or the tool's
    key function). A given key is scoped to its tool — two tools never answer from each
    other's record — and stored as a salted hash, so it never spells out a personal value
    and adding or changing ``redact=`` later does not change it."""
    tool = call.tool
    if call.spec.key is not None:
        custom: object = call.spec.key
    elif tool.key is not None:
        try:
            custom = tool.key(call.input)
        except Exception as exc:
            reason = f"key function of {tool.name!r} failed: {type(exc).__name__}: {exc}"
            return (yield from record(call, Status.REJECTED, rejection_reason=call.clean(reason)))
        if not isinstance(custom, str) or not custom:
            reason = (
                f"key function of {tool.name!r} returned {type(custom).__name__} "
                f"{safe_preview(custom)}, not a non-empty str"
            )
            return (yield from record(call, Status.REJECTED, rejection_reason=call.clean(reason)))
    elif tool.scope == "session" and call.spec.correlation_id is not None:
        session = sha256_hex_of(call.spec.correlation_id.encode("utf-8"))[:16]
        call.key = f"{tool.name}:session:{session}:{call.input_hash}"
        return None
    else:
        call.key = f"{tool.name}:{call.input_hash}"
        return None
    if not call.salt:
        call.salt = yield RedactionSalt()
    assert isinstance(custom, str)  # checked above, or typed so by execute()
    stored_as = own_key if call.spec.own_key else given_key
    call.key = stored_as(tool.name, custom, call.salt)
    return None


def given_key(tool_name: str, key: str, salt: str) -> str:
    """How a key given for ``tool_name`` is stored: scoped to the tool, salted and hashed."""
    return f"{tool_name}:key:{marker(salt, key).removeprefix('redacted:')}"


def own_key(tool_name: str, key: str, salt: str) -> str:
    """How a key the runtime made for itself (``saga:ID:0``) is stored. The hash covers a
    JSON array, where a given key's covers a JSON string: no text a tool, a caller or a
    model passes as a key can be stored as one of these."""
    return f"{tool_name}:key:{marker(salt, ['dar', key]).removeprefix('redacted:')}"


# --- answers that run nothing ----------------------------------------------------------------


def record(call: Call, status: Status, attempt: int | None = None, **fields: Any) -> Ops[Result]:
    """Append this call's row for an answer that ran nothing, and return that answer."""
    ev = call.row(EventKind(status.value), attempt=attempt, **fields)
    yield Append(ev)
    return call.result(
        status,
        ev,
        reason=fields.get("rejection_reason"),
        rule=fields.get("rule_name"),
        error=fields.get("error"),
    )


def first_refusal(
    call: Call,
) -> Ops[tuple[Rule, Deny] | tuple[Rule, NeedsApproval] | None]:
    """Run the rules in order, up to the first that refuses. A rule that asks for approval
    does not stop the others: a refusal by a later rule still wins (no one is asked to
    approve what would be refused anyway)."""
    tool = call.tool
    ctx = RuleContext(tool.name, tool.effect, call.spec.correlation_id, call.spec.events_reader)
    asks: tuple[Rule, NeedsApproval] | None = None
    for r in call.rules:
        verdict: Deny | NeedsApproval | None = yield CheckRule(r, call.input, ctx)
        if isinstance(verdict, Deny):
            return r, verdict
        if verdict is not None and asks is None:
            asks = (r, verdict)
    return asks


def refusal_row(call: Call, refused: tuple[Rule, Deny]) -> NewEvent:
    r, deny = refused
    return call.row(EventKind.REJECTED, rejection_reason=call.clean(deny.reason), rule_name=r.name)


#: `judge`'s answer when a concurrent identical call has just used the grant: look again.
AGAIN = "again"


def judge(call: Call, claim: Claim | None = None) -> Ops[Result | str | None]:
    """Run the rules; the first refusal is logged and answered. A call that needs approval
    goes ahead only with an unused grant for exactly this call (see `seek_approval`)."""
    refused = yield from first_refusal(call)
    if refused is None:
        return None
    r, verdict = refused
    if isinstance(verdict, NeedsApproval):
        asked = yield from seek_approval(call, r, verdict, claim)
        if isinstance(asked, Result) and asked.status is Status.AWAITING_APPROVAL:
            over = yield from share_while_waiting(call, claim)
            return asked if over is None else over
        return asked
    ev = refusal_row(call, (r, verdict))
    yield Append(ev)
    return call.result(Status.REJECTED, ev, reason=ev.rejection_reason, rule=ev.rule_name)


def seek_approval(
    call: Call, rule: Rule, asks: NeedsApproval, claim: Claim | None
) -> Ops[Result | str | None]:
    """Use this exact call's grant (None: go on and run), or answer without running:
    denied, still waiting, or a new request for a person."""
    fp = fingerprint(call.rules)
    bound = binding(call.tool.name, call.input_hash, call.key, fp)
    now = call.spec.clock()
    answer = yield UseGrant(bound, now, call.spec.call_event_id)
    grant = answer.approval
    if answer.kind == "granted":
        assert grant is not None
        if not trusted(call, grant):
            reason = (
                f"approval {grant.approval_id} is not signed with this DAR_APPROVAL_SECRET "
                "and was refused; calling again asks a person"
            )
            return (yield from record(call, Status.REJECTED, rejection_reason=reason))
        if grant.edited_hash is not None:
            return (yield from use_edit(call, grant, rule))
        note = f"approved by {grant.decided_by} (approval {grant.approval_id})"
        yield Append(call.row(EventKind.APPROVAL_USED, rejection_reason=note, rule_name=rule.name))
        return None
    if answer.kind == "denied":
        assert grant is not None
        reason = f"denied by {grant.decided_by}" + (f": {grant.note}" if grant.note else "")
        ev = call.row(EventKind.REJECTED, rejection_reason=call.clean(reason), rule_name=rule.name)
        yield Append(ev)
        return call.result(Status.REJECTED, ev, reason=ev.rejection_reason, rule=rule.name)
    if answer.kind == "pending":
        assert grant is not None
        return (yield from awaiting(call, rule, grant.approval_id, asks.reason))
    # A grant refused for its signature ran nothing: the call is askable again at once.
    in_flight = (
        grant is not None and trusted(call, grant) and grant_in_flight(call, grant, claim, now)
    )
    if answer.kind == "used" and call.key is not None and in_flight:
        assert grant is not None
        if grant.edited_hash is None or not (yield from refused_at_use(call, grant)):
            return AGAIN
    request = Approval(
        approval_id=new_id(),
        binding=bound,
        tool_name=call.tool.name,
        effect=call.tool.effect.value,
        input_hash=call.input_hash,
        idempotency_key=call.key,
        rules_fingerprint=fp,
        correlation_id=call.spec.correlation_id,
        call_id=call.spec.call_event_id,
        input=call.input_text,
        rule_name=rule.name,
        reason=call.clean(asks.reason),
        status="pending",
        requested_at=now,
    )
    ev = requested_row(call, rule, request.approval_id, asks.reason)
    opened = yield RequestApproval(request, ev)
    if opened != request.approval_id:  # a concurrent identical call opened it first
        return (yield from awaiting(call, rule, opened, asks.reason))
    return call.result(
        Status.AWAITING_APPROVAL, ev, reason=ev.rejection_reason, rule=rule.name,
        approval_id=opened,
    )  # fmt: skip


def use_edit(call: Call, grant: Approval, rule: Rule) -> Ops[Result | None]:
    """Go on with the arguments a person edited the call to, checked again now (the world
    may have moved since the approval): the schema, then the rules, where a ``Deny``
    refuses it. The claim stays the request's (a retry of the request answers the edited
    call's result); the rows of the execution carry the edit, so the effect runs on
    exactly the input the log shows. The ``approval_used`` row, the request's, says how
    it was edited."""
    edited = grant.edited_input or ""
    intact = sha256_hex_of(edited.encode("utf-8")) == grant.edited_hash
    changes = (
        edit_summary(call.input_text, edited) if intact else "(one that does not match its hash)"
    )
    note = f"approved by {grant.decided_by} with an edit: {changes} (approval {grant.approval_id})"
    yield Append(call.row(EventKind.APPROVAL_USED, rejection_reason=note, rule_name=rule.name))
    about = f"the edit of approval {grant.approval_id}"
    if call.tool.redactor is not None:  # its log would show the personal values
        reason = f"{about} cannot run: tool {call.tool.name!r} redacts personal fields"
        return (yield from record(call, Status.REJECTED, rejection_reason=reason))
    if not intact:
        reason = f"{about} does not match its hash and was refused"
        return (yield from record(call, Status.REJECTED, rejection_reason=reason))
    call.input_text = call.canonical = edited
    call.input_hash = grant.edited_hash or ""
    call.edit = {
        "approval_id": grant.approval_id,
        "by": grant.decided_by,
        "arguments": json.loads(edited),
        "changes": changes,
    }
    try:
        call.kwargs = call.tool.signature.validate(edited, coerce=call.tool.coerce)
    except ArgumentError as exc:
        reason = f"{about}: invalid arguments: {exc}"
        return (yield from record(call, Status.REJECTED, rejection_reason=reason))
    refused = yield from first_refusal(call)
    if refused is not None and isinstance(refused[1], Deny):
        ev = refusal_row(call, (refused[0], refused[1]))
        yield Append(ev)
        return call.result(Status.REJECTED, ev, reason=ev.rejection_reason, rule=ev.rule_name)
    return None  # a rule that asks for approval asks for what the person approved


def refused_at_use(call: Call, grant: Approval) -> Ops[bool]:
    """Whether the call that used ``grant`` refused its edit (then it is done with the
    grant, and this call asks a person again rather than waiting for it)."""
    assert call.key is not None
    rows = yield ReadLog(LogFilter(key=call.key, status=EventKind.REJECTED.value))
    return any(row.call_id == grant.used_by for row in rows)


def edit_summary(asked: str | None, edited: str) -> str:
    """What a person changed, path by path with both values: ``$.amount 500 -> 80``."""
    if asked is None:
        return f"the arguments are now {edited}"
    found = differences(json.loads(asked), json.loads(edited))
    shown = [f"{path} {_shown(old)} -> {_shown(new)}" for path, old, new in found[:5]]
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return ", ".join(shown) + more


def _shown(value: Any) -> str:
    if value is MISSING:
        return "(absent)"
    text = canonical_json(value).decode("utf-8")
    return text if len(text) <= 60 else text[:57] + "..."


def trusted(call: Call, grant: Approval) -> bool:
    """With ``DAR_APPROVAL_SECRET`` set, only a grant signed with it counts."""
    secret = call.spec.approval_secret
    return secret is None or signed_by(secret, grant)


def grant_in_flight(call: Call, grant: Approval, claim: Claim | None, now: float) -> bool:
    """Whether the call that used ``grant`` may still be on its way to the key (a
    concurrent duplicate: wait for it), rather than done with it (a new call: ask again).
    A user that never took the key within a lease is gone: ask again."""
    if grant.used_at is None or now - grant.used_at > call.tool.lease:
        return False
    if claim is None:
        return True
    finished = claim.completed_at
    return finished is None or finished < grant.used_at


def requested_row(call: Call, rule: Rule, approval_id: str, reason: str) -> NewEvent:
    text = call.clean(f"{reason} (approval {approval_id})")
    return call.row(EventKind.APPROVAL_REQUESTED, rejection_reason=text, rule_name=rule.name)


def awaiting(call: Call, rule: Rule, approval_id: str, reason: str) -> Ops[Result]:
    """The request for this call is open: say so in the log, and answer that it waits."""
    ev = requested_row(call, rule, approval_id, reason)
    yield Append(ev)
    return call.result(
        Status.AWAITING_APPROVAL, ev, reason=ev.rejection_reason, rule=rule.name,
        approval_id=approval_id,
    )  # fmt: skip


def answer_from_claim(call: Call, verdict: Verdict, claim: Claim) -> Ops[Result]:
    """A live claim answers for this call: conflict, kept failure or indeterminate."""
    if verdict is Verdict.CONFLICT:
        assert call.key is not None
        rows = yield ReadLog(LogFilter(key=call.key, status=EventKind.STARTED.value))
        first = next((ev for ev in rows if ev.input_hash == claim.input_hash), None)
        reason = conflict_reason(call, None if first is None else first.input)
        return (yield from record(call, Status.CONFLICT, claim.attempts, rejection_reason=reason))
    if verdict is Verdict.KEPT_FAILURE:
        return (yield from record(call, Status.FAILED, claim.attempts, error=claim.error))
    assert verdict is Verdict.INDETERMINATE, verdict
    reason = (
        f"a call with key {call.key!r} crashed mid-effect; "
        f"resolve it with `dar resolve {call.key} --executed/--not-executed`"
    )
    return (yield from record(call, Status.INDETERMINATE, claim.attempts, rejection_reason=reason))


def conflict_reason(call: Call, first: Any) -> str:
    """Which arguments differ from the first call with this key: paths, never values (the
    first call's input is its logged, redacted form)."""
    if not isinstance(first, dict):
        return (
            "this idempotency key was first used with other arguments, which are no "
            "longer in the log"
        )
    paths = differing_paths(first, json.loads(call.input_text))
    shown = ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")
    return f"this idempotency key was first used with other arguments ({shown} differ)"


def differing_paths(a: Any, b: Any) -> list[str]:
    """The JSON paths where two JSON values differ (a member only one side has counts)."""
    return [path for path, _a, _b in differences(a, b)]


#: A member one side of `differences` does not have.
MISSING: Any = object()


def differences(a: Any, b: Any, path: str = "$") -> list[tuple[str, Any, Any]]:
    """Where two JSON values differ: ``(path, a's value, b's value)``, `MISSING` for a
    member only the other side has."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[tuple[str, Any, Any]] = []
        for name in sorted(a.keys() | b.keys()):
            child = f"{path}.{name}" if name.isidentifier() else f"{path}[{json.dumps(name)}]"
            if name not in a or name not in b:
                out.append((child, a.get(name, MISSING), b.get(name, MISSING)))
            else:
                out.extend(differences(a[name], b[name], child))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{path}[{i}]")
        ]
    same = type(a) is type(b) and a == b
    return [] if same else [(path, a, b)]


def expire(call: Call, claim: Claim) -> Ops[Result | None]:
    """A crashed external effect with no reconcile: indeterminate, for an operator. None
    when another worker moved the claim first (look again)."""
    reason = "lease expired with no recorded outcome"
    ev = call.row(EventKind.INDETERMINATE, attempt=claim.attempts, rejection_reason=reason)
    assert call.key is not None
    moved = yield Mark(call.key, claim.version, ClaimState.INDETERMINATE, ev)
    if not moved:
        return None
    return call.result(Status.INDETERMINATE, ev, reason=reason)


# --- acquire: look-up, waiting, crash recovery, rules, the atomic claim ----------------------


@dataclass(slots=True)
class Patience:
    """How long a duplicate still waits for the call in progress: exponential backoff up to
    ``BACKOFF_MAX`` per wait, ``limit`` seconds in all."""

    limit: float
    waited: float = 0.0
    delay: float = BACKOFF_FIRST

    def next(self) -> float | None:
        """Seconds to wait next, or None when patience has run out."""
        if self.waited >= self.limit:
            return None
        seconds = min(self.delay, self.limit - self.waited)
        self.delay = min(self.delay * 2, BACKOFF_MAX)
        return seconds


def take(call: Call, now: float, claim: Claim | None) -> Take:
    """The operation that takes the key, replacing ``claim`` (None: inserting)."""
    assert call.key is not None
    attempts = claim.attempts if claim is not None else 0
    started = call.row(EventKind.STARTED, event_id=call.spec.call_event_id, attempt=attempts + 1)
    return Take(
        call.key,
        call.tool.name,
        call.request_hash,
        call.spec.owner,
        now + call.tool.lease,
        now,
        None if claim is None else claim.version,
        started,
    )


def look(call: Call, first: bool) -> Ops[tuple[bool, Claim | None, NewEvent]]:
    """Read the claim (logging a hit). On the first look at a key no rule judges and this
    runtime has not seen completed, the look-up and the claim are one step: the store
    takes the key if it is free. Returns ``(taken, claim, hit row)``."""
    assert call.key is not None
    now = call.spec.clock()
    hit = call.row(EventKind.CACHED)
    if first and not call.rules and not call.tool.guards and not call.spec.known_key(call.key):
        taken, claim = yield TakeOrLookup(take(call, now, None), hit)
        return taken, claim, hit
    claim, _logged = yield Lookup(call.key, call.request_hash, now, hit)
    return False, claim, hit


def judge_patiently(
    call: Call,
    claim: Claim | None,
    patience: Patience,
    judging: Callable[[Call, Claim | None], Ops[Result | str | None]] | None = None,
) -> Ops[Result | str | None]:
    """`judge` (or ``judging``), where a duplicate that just used this call's grant is
    waited for (it will hold the key) rather than sent to a person again."""
    refused = yield from (judging or judge)(call, claim)
    if refused != AGAIN:
        return refused
    assert call.key is not None
    seconds = patience.next()
    if seconds is None:
        return (yield from record(call, Status.IN_PROGRESS, rejection_reason=USED))
    patience.waited += yield Wait(call.key, seconds)
    return AGAIN


def acquire(call: Call) -> Ops[Acquired | Result]:
    """Take the key, or answer without running: from the record, as a conflict, after
    waiting in vain, or as a crash for an operator."""
    assert call.key is not None
    patience = Patience(call.spec.wait)
    judged = False
    first = True
    while True:
        taken, claim, hit = yield from look(call, first)
        if taken:
            return Acquired(1, reconcile=False)
        first = False
        now = call.spec.clock()
        effect = call.tool.effect
        verdict = classify(
            claim,
            now,
            call.request_hash,
            blind_retry_safe=effect.blind_retry_safe,
            can_reconcile=call.tool.reconcile is not None,
        )
        if verdict is Verdict.HIT:
            assert claim is not None  # the store has logged (or buffered) the hit row
            return cached(call, claim, hit)
        if verdict is Verdict.RUNNING:
            seconds = patience.next()
            if seconds is None:
                reason = f"still running after waiting {patience.waited:.3f}s"
                assert claim is not None
                return (
                    yield from record(
                        call, Status.IN_PROGRESS, claim.attempts, rejection_reason=reason
                    )
                )
            # The store may wake us early (Postgres LISTEN/NOTIFY); polling is the fallback.
            patience.waited += yield Wait(call.key, seconds)
            continue
        if verdict is Verdict.EXPIRED:
            assert claim is not None
            expired = yield from expire(call, claim)
            if expired is None:
                continue
            return expired
        if verdict in (Verdict.CONFLICT, Verdict.KEPT_FAILURE, Verdict.INDETERMINATE):
            assert claim is not None
            return (yield from answer_from_claim(call, verdict, claim))
        reconciling = verdict is Verdict.RECONCILE
        if not judged and not reconciling:
            refused = yield from judge_patiently(call, claim, patience)
            if isinstance(refused, Result):
                return refused
            if refused == AGAIN:
                continue
            judged = True
        got = yield from take_guarded(call, claim, patience, reconciling)
        if got is not None:
            return got
        # Someone else moved first (or a grant's user is awaited): look again.


def take_guarded(
    call: Call, claim: Claim | None, patience: Patience, reconciling: bool
) -> Ops[Acquired | Result | None]:
    """Write the call's shares of its guards (a crashed call being reconciled has its
    own), then take the key; None when the key was lost (the shares are given back) and
    the caller looks again."""
    if not reconciling and call.tool.guards and not call.reserved:
        guarded = yield from judge_patiently(call, claim, patience, guard)
        if isinstance(guarded, Result):
            return guarded
        if guarded == AGAIN:
            return None
    op = take(call, call.spec.clock(), claim)
    if (yield op):
        return Acquired(op.started.attempt or 1, reconcile=reconciling)
    yield from let_go(call)
    return None


def cached(call: Call, claim: Claim, hit: NewEvent) -> Result:
    """The answer from the record, typed as the handler's return annotation names it."""
    if claim.output is None:
        reason = claim.error or "the first call's output was not recorded"
        return call.result(Status.CACHED, hit, reason=reason)
    output = call.tool.signature.load_output(json.loads(claim.output))
    return call.result(Status.CACHED, hit, output=output, output_json=claim.output)


# --- reconcile and run -----------------------------------------------------------------------


def reconcile(call: Call, attempt: int) -> Ops[Result | None]:
    """We hold the claim of a crashed call: did its effect happen? Returns the answer, or
    None when it did not and this call may run (after the rules judge it)."""
    assert call.key is not None
    ran = yield from edited_attempt(call)
    info = yield from call_info(call, attempt)
    rec = yield CallReconcile(call.tool, call.input if ran is None else ran.input, info)
    verdict = rec.value if rec.ok else None
    if isinstance(verdict, Reconciled) and verdict.executed:
        if ran is not None:  # its outcome is recorded with the input it ran on
            call.input_text = call.canonical = canonical_json(ran.input).decode("utf-8")
            call.input_hash = ran.input_hash or ""
        done = Outcome(True, verdict.output, duration_ms=rec.duration_ms)
        result = yield from finished(call, done, attempt)
        return replace(result, status=Status.CACHED, extra={"reconciled": True})
    if not isinstance(verdict, Reconciled):
        error = rec.error or f"reconcile returned {type(verdict).__name__}, not Reconciled"
        ev = call.row(EventKind.INDETERMINATE, attempt=attempt, error=call.clean(error))
        now = call.spec.clock()
        # The claim holds the row's text: made storable (and scrubbed) in one place.
        yield Finish(
            call.key, call.spec.owner, ClaimState.INDETERMINATE, None, ev.error, now, None, ev
        )
        return call.result(Status.INDETERMINATE, ev, error=ev.error)
    # Reconciled(executed=False): the effect did not happen. We hold the claim; the call is
    # judged by the rules like any fresh call, then runs — or its refusal releases the key,
    # in one step whose row says how the call ended.
    refused = yield from first_refusal(call)
    if refused is None:
        return None
    r, verdict = refused
    now = call.spec.clock()
    if isinstance(verdict, NeedsApproval):
        # We hold the key: run with this call's grant, or give the key back while a
        # person decides.
        asked = yield from seek_approval(call, r, verdict, None)
        if asked is None:
            return None
        ev = call.row(EventKind.RELEASED, rejection_reason="released while approval is sought")
        yield Finish(call.key, call.spec.owner, ClaimState.RELEASED, None, None, now, None, ev)
        if isinstance(asked, Result):
            return asked
        return call.result(Status.IN_PROGRESS, ev, reason=USED)
    ev = refusal_row(call, (r, verdict))
    yield Finish(call.key, call.spec.owner, ClaimState.RELEASED, None, None, now, None, ev)
    return call.result(Status.REJECTED, ev, reason=ev.rejection_reason, rule=ev.rule_name)


def edited_attempt(call: Call) -> Ops[Event | None]:
    """The ``started`` row of the crashed attempt this call reconciles, when that attempt
    ran on a person's edit (`use_edit`): reconcile is asked about the input the effect ran
    on, not the request's."""
    assert call.key is not None
    rows: list[Event] = yield ReadLog(LogFilter(key=call.key, status=EventKind.STARTED.value))
    earlier = [r for r in rows if r.call_id != call.spec.call_event_id]
    last = earlier[-1] if earlier else None
    if last is None or last.input_hash in (None, call.request_hash) or call.tool.redactor:
        return None
    return last


def run(call: Call, attempt: int) -> Ops[Result]:
    """The effect, once, and its recorded outcome."""
    info = yield from call_info(call, attempt)
    outcome = yield CallHandler(call.tool, call.kwargs, info)
    if outcome.interrupt is not None:
        return (yield from cancelled(call, outcome, attempt))
    if outcome.timed_out is not None:
        return (yield from timed_out(call, outcome, attempt))
    return (yield from finished(call, outcome, attempt))


def call_info(call: Call, attempt: int) -> Ops[CallInfo]:
    """What `dar.current_call` tells the handler (and ``reconcile``) of this call."""
    key = None
    if call.key is not None:
        if not call.salt:
            call.salt = yield RedactionSalt()
        key = provider_key(call.salt, call.key)
    spec = call.spec
    return CallInfo(key, spec.call_event_id, spec.correlation_id, attempt, call.tool.name)


def provider_key(salt: str, key: str) -> str:
    """The key a handler forwards to a provider, derived from the claim's ``key``: the same
    for every attempt of one call; salted with the database's salt, so another database
    (a staging copy, another tenant) never sends the same one and the provider learns
    nothing of the input; 36 characters, under every provider's limit (Stripe's: 255)."""
    return "dar-" + marker(salt, ["dar-provider-key", key]).removeprefix("redacted:")


def timed_out(call: Call, outcome: Outcome, attempt: int) -> Ops[Result]:
    """The handler was still running at its timeout. A ``read`` failed, and may be called
    again; any other effect may have happened, or may still happen (a sync handler's
    thread runs on), so its key is ``indeterminate``: never released for a second run, it
    waits for ``reconcile`` or an operator."""
    reason = f"timed out after {outcome.timed_out:g}s"
    if call.key is None:
        return (yield from finished(call, replace(outcome, error=reason), attempt))
    now = call.spec.clock()
    ev = outcome_row(call, EventKind.INDETERMINATE, outcome, attempt, now, rejection_reason=reason)
    yield from close_claim(call, ev, ClaimState.INDETERMINATE, None, reason, now, None)
    return call.result(Status.INDETERMINATE, ev, reason=reason)


def cancelled(call: Call, outcome: Outcome, attempt: int) -> Ops[Result]:
    """The handler was interrupted: say so in the log at once. A ``read``/``mutate-local``
    key is released (running it again is safe) unless the handler's thread runs on; an
    external effect may have happened, so its key is ``indeterminate`` now, for reconcile
    or an operator, not after the lease."""
    tool = call.tool
    now = call.spec.clock()
    reason = f"cancelled while running: {type(outcome.interrupt).__name__}"
    if outcome.still_running:
        reason += " (the handler's thread runs on)"
    ev = outcome_row(call, EventKind.CANCELLED, outcome, attempt, now, rejection_reason=reason)
    safe = tool.effect.blind_retry_safe and not outcome.still_running
    state = ClaimState.RELEASED if safe else ClaimState.INDETERMINATE
    yield from close_claim(call, ev, state, None, reason, now, None)
    return call.result(Status.CANCELLED, ev, reason=reason)


def recorded_output(call: Call, outcome: Outcome) -> tuple[str | None, str | None]:
    """The output as the log and the claim hold it (redacted), or why it could not be."""
    try:
        value = json_output(outcome.value)
        if call.tool.redactor is not None:
            value = call.tool.redactor.apply_output(value, call.salt, call.removed)
        text = canonical_json(value).decode("utf-8")
        if "\\u0000" in text:
            return None, "output not recorded: it contains a NUL character (\\u0000)"
        return text, None
    except (CanonicalizationError, PydanticSerializationError) as exc:
        # The effect happened: record completion anyway, never run it again.
        return None, f"output not recorded: {exc}"
    except Exception as exc:  # a redact= function that fails on the output
        return None, f"output not recorded: redaction failed: {type(exc).__name__}"


def json_output(value: Any) -> Any:
    """The output as JSON values: as is when it has a canonical form (the fast path), else
    converted the way pydantic writes models, dataclasses and dates in JSON."""
    try:
        canonical_json(value)
        return value
    except CanonicalizationError:
        converted = to_json(value)
        if converted is None:
            raise
        return converted


def finished(call: Call, outcome: Outcome, attempt: int) -> Ops[Result]:
    """Record a handler's outcome (and release or complete the claim)."""
    tool = call.tool
    now = call.spec.clock()
    if outcome.ok:
        output_text, error = recorded_output(call, outcome)
        status, state = Status.EXECUTED, ClaimState.DONE
    else:
        output_text, error = None, call.clean(outcome.error)
        status = Status.FAILED
        state = ClaimState.FAILED if tool.keep_failures else ClaimState.RELEASED
    marked = {} if call.flag is None or not outcome.ok else flagged(call.flag)
    ev = outcome_row(
        call,
        EventKind(status.value),
        outcome,
        attempt,
        now,
        output=output_text,
        error=error,
        **marked,
    )
    expires = None if tool.window is None else now + tool.window
    # The claim holds the row's error text, which the row builder made storable.
    yield from close_claim(call, ev, state, output_text, ev.error, now, expires)
    return call.result(
        status,
        ev,
        output=outcome.value if outcome.ok else None,
        error=ev.error,
        output_json=output_text,
        retryable=state is ClaimState.RELEASED or call.key is None,
    )


def outcome_row(
    call: Call, kind: EventKind, outcome: Outcome, attempt: int, now: float, **fields: Any
) -> NewEvent:
    """The row that ends a call that ran: a read's only row shares the call's id."""
    return call.row(
        kind,
        event_id=call.spec.call_event_id if call.key is None else new_id(),
        attempt=attempt,
        duration_ms=outcome.duration_ms,
        completed_at=round(now, 6),
        **fields,
    )


def close_claim(
    call: Call,
    ev: NewEvent,
    state: ClaimState,
    output: str | None,
    error: str | None,
    now: float,
    expires: float | None,
) -> Ops[None]:
    """Write the outcome row, moving the claim with it when the call has a key."""
    if call.key is None:
        yield Append(ev)
    else:
        yield Finish(call.key, call.spec.owner, state, output, error, now, expires, ev)


# --- guards: the call's share of its tool's history (`dar.core.guards`) ------------------------


def pending_of(call: Call) -> Ops[guards.Pending | Result]:
    """This call as its guards see it: scopes, amounts, and its texts' vectors (one
    embedding per call, stored with its share so the history is never embedded again)."""
    tool, spec = call.tool, call.spec
    arguments, now = call.input, spec.clock()
    scans, amounts, texts, labels = [], [], [], []
    try:
        for g in tool.guards:
            scope, label = guards.scope_of(tool.name, g, arguments, spec.correlation_id)
            scans.append(GuardScan(tool.name, g.name, scope, now - g.seconds))
            labels.append(label)
            amounts.append(guards.amount_of(g, arguments) if isinstance(g, Budget) else 0.0)
            texts.append(guards.text_of(g, arguments) if isinstance(g, Similar) else None)
    except guards.GuardInputError as exc:
        return (yield from record(call, Status.REJECTED, rejection_reason=call.clean(str(exc))))
    wanted = tuple(t for t in texts if t is not None)
    answer = (yield Embed(wanted)) if wanted else []
    if isinstance(answer, Outcome):
        reason = f"the embedder failed: {answer.error}"
        return (yield from record(call, Status.REJECTED, rejection_reason=call.clean(reason)))
    found = iter(answer)
    vectors = tuple(None if t is None else tuple(next(found)) for t in texts)
    return guards.Pending(
        tool.name, call.key, spec.call_event_id, now, tool.lease, tool.guards,
        tuple(scans), tuple(amounts), tuple(texts), vectors, tuple(labels), call.approved,
    )  # fmt: skip


def guard(call: Call, claim: Claim | None) -> Ops[Result | str | None]:
    """Write this call's shares of its guards' scopes (None: go on), or answer without
    running: refused, or held for a person (the approval flow; a grant for exactly this
    call lets it pass the guard that held it)."""
    if not call.tool.guards:
        return None
    pending = yield from pending_of(call)
    if isinstance(pending, Result):
        return pending
    decision: GuardDecision = yield ReserveGuards(pending.scans, partial(guards.decide, pending))
    if decision.refusal is None:
        call.reserved = True
        call.flag = decision.flags[0] if decision.flags else None
        return None
    name, then, reason = decision.refusal
    if then == "reject":
        ev = call.row(EventKind.REJECTED, rejection_reason=call.clean(reason), rule_name=name)
        yield Append(ev)
        return call.result(Status.REJECTED, ev, reason=ev.rejection_reason, rule=name)
    held = Rule(name=name, check=lambda _input, _ctx: None, applies_to=call.tool.name)
    asked = yield from seek_approval(call, held, NeedsApproval(reason), claim)
    if asked is not None:
        return asked
    call.approved |= {name}
    return (yield from guard(call, claim))


def share_while_waiting(call: Call, claim: Claim | None) -> Ops[Result | None]:
    """A call waiting for a person keeps its share for good (until it comes back to run,
    or the window passes): a budget counts what is about to be approved. A call that
    would go over is refused now rather than put before a person."""
    if not call.tool.guards:
        return None
    over = yield from guard(call, claim)
    if isinstance(over, Result):
        return over
    yield SettleGuards(call.spec.call_event_id, guards.HELD, None)
    call.reserved = False
    return None


def let_go(call: Call) -> Ops[None]:
    """Give the call's shares back: it did not run."""
    if call.reserved:
        yield settle(call, guards.RELEASED)
        call.reserved = False


def adopt(call: Call) -> Ops[None]:
    """Take over the shares of the crashed attempt this call reconciles (its key's), kept
    counted while it is decided: whatever the call ends as settles them, and no second
    share is written for one effect."""
    if call.tool.guards:
        call.reserved = call.adopted = True
        yield settle(call, guards.HELD, None)


def settle(call: Call, state: str, held_until: float | None = None) -> SettleGuards:
    key = call.key if call.adopted else None
    return SettleGuards(call.spec.call_event_id, state, held_until, key)


def settled(call: Call, result: Result) -> Ops[Result]:
    """Settle the shares of a call that ran (or was reconciled): executed uses them; a
    failure, a cancelled call that may run again, or a refusal gives them back; an
    indeterminate call, or one waiting for a person, keeps them for good."""
    if call.reserved:
        status = result.status
        if status is Status.EXECUTED or (
            status is Status.CACHED and result.extra.get("reconciled")
        ):
            yield settle(call, guards.USED)
        elif status in (Status.REJECTED, Status.IN_PROGRESS) or (
            status in (Status.FAILED, Status.CANCELLED) and result.retryable
        ):
            yield settle(call, guards.RELEASED)
        else:
            yield settle(call, guards.HELD, None)
        call.reserved = False
    return result


def flagged(flag: tuple[str, str]) -> dict[str, str]:
    """How an executed row says a guard flagged it: its reason and the guard's name."""
    name, reason = flag
    return {"rejection_reason": f"flagged: {reason}", "rule_name": name}


def preview_guards(call: Call) -> Ops[tuple[str, str] | None]:
    """What the guards would say of the call now, writing nothing (a dry run): ``(would,
    reason)`` when they would refuse, hold or flag it; None when they let it run."""
    if not call.tool.guards:
        return None
    pending = yield from pending_of(call)
    if isinstance(pending, Result):
        return "be refused", pending.reason or ""
    decision: GuardDecision = yield CheckGuards(pending.scans, partial(guards.decide, pending))
    if decision.refusal is not None:
        name, then, reason = decision.refusal
        would = "be refused" if then == "reject" else "be held for a person's approval"
        return would, f"{name}: {call.clean(reason)}"
    if decision.flags:
        name, reason = decision.flags[0]
        return "execute", f"{name} would flag it: {call.clean(reason)}"
    return None


# --- helpers ---------------------------------------------------------------------------------


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
