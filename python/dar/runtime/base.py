"""What the sync and async runtimes share: configuration, rules, tools, and the set-up of
each decision they hand to their executor.

The two runtimes differ only in how they execute the operations a decision yields
(`dar.runtime.execute`); everything else is here, once.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any

from dar._core import canonical_json
from dar.context import check_correlation_id, current_session, enclosing_call
from dar.core import approval, dryrun, grants, search
from dar.core.decide import (
    WITHHELD,
    CallSpec,
    canonical_input,
    decide_call,
    input_digest,
    unknown_tool,
    unruled,
)
from dar.core.dryrun import Plan
from dar.core.ids import derived_id, new_id
from dar.core.ops import Append, Ops, RequestApproval
from dar.core.rows import CallRows
from dar.core.search import Outcome
from dar.core.states import EventKind
from dar.effects import Effect, Status
from dar.embedding import Embedder, default_embedder
from dar.errors import ConfigurationError
from dar.records import Approval, Result
from dar.rules import Rule
from dar.speculate import Candidate, Node, Search, Step
from dar.tools import Tool

IN_MEMORY = (
    "dar: this Runtime has no database URL, so its log and idempotency records live in "
    "memory and vanish at exit; pass one, e.g. Runtime('sqlite:///agent.db')"
)

DEFAULT_WAIT = 30.0

#: Code run around every call (`dar.integrations.otel.instrument` sets one): given the
#: tool's name and the call's decision, a context manager giving the decision to drive in
#: its place. It is entered in the caller's context, so whatever it makes current there (a
#: span) is current while the handler runs, and for the calls nested in it.
CallObserver = Callable[[str, Ops[Result]], AbstractContextManager[Ops[Result]]]


class RuntimeBase:
    """Rules, clock, identity and defaults of a runtime."""

    def __init__(
        self,
        *,
        tools: Iterable[Tool[Any]] = (),
        rules: Iterable[Rule] = (),
        wait: float = DEFAULT_WAIT,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        in_memory: bool = False,
        dry_run: bool = False,
        replay: str | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        if embedder is not None and not callable(embedder):
            raise ConfigurationError(
                f"embedder must be a callable (texts -> vectors), not {type(embedder).__name__}"
            )
        #: What ``Similar`` guards embed texts with (None: the offline default, loaded at
        #: the first tool that has one).
        self.embedder: Embedder | None = embedder
        self._rules: tuple[Rule, ...] = ()
        self._tools: dict[str, Tool[Any]] = {}
        for r in rules:
            self.add_rule(r)
        for t in tools:
            self.add_tool(t)
        self._warn_in_memory = in_memory
        self.dry_run = dry_run
        self._replay = replay
        self._plans: list[Plan] = []
        #: Grants must carry this HMAC to be used (``DAR_APPROVAL_SECRET``).
        self.approval_secret = os.environ.get("DAR_APPROVAL_SECRET") or None
        if wait < 0:
            raise ConfigurationError("wait must be >= 0 seconds")
        self.wait = wait
        self.clock = clock
        # Unique per runtime instance: a worker that lost its lease never mistakes a newer
        # claim for its own, even on the same host and process.
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        # Keys seen completed lately: only picks the cheaper statement for a likely hit.
        self._known: OrderedDict[str, None] = OrderedDict()
        #: What runs around each call; None: nothing (`CallObserver`).
        self.observer: CallObserver | None = None

    @property
    def mode(self) -> str | None:
        """``"replay"`` or ``"dry run"``: what the executor lets through; None when live."""
        if self._replay is not None:
            return "replay"
        return "dry run" if self.dry_run else None

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
        """Remove a rule (by object or name); ``KeyError`` when it is not in force, and
        ``ConfigurationError`` (the rule stays) when it is the last rule of a registered
        irreversible tool."""
        name = rule if isinstance(rule, str) else rule.name
        if not any(r.name == name for r in self._rules):
            raise KeyError(name)
        rest = tuple(r for r in self._rules if r.name != name)
        for t in self._tools.values():
            _check_ruled(t, rest)
        self._rules = rest

    @property
    def tools(self) -> tuple[Tool[Any], ...]:
        """The registered tools, in the order they were added: what ``call`` dispatches to
        and ``tool_schemas`` describes."""
        return tuple(self._tools.values())

    def add_tool(self, tool: Tool[Any]) -> None:
        """Register a tool for ``call(name, ...)``. An irreversible tool with no rule that
        applies to it is refused here, at start-up, not at its first call."""
        if not isinstance(tool, Tool):
            raise TypeError(f"expected a Tool (use @tool(...)), got {type(tool).__name__}")
        if tool.name in self._tools:
            raise ConfigurationError(f"a tool named {tool.name!r} is already registered")
        _check_ruled(tool, self._rules)
        if tool.similar:
            self.embedding()  # a missing [semantic] extra is found here, not at a call
        self._tools[tool.name] = tool

    def embedding(self) -> Embedder:
        """The embedder of ``Similar`` guards: the one given, else the offline default."""
        if self.embedder is None:
            self.embedder = default_embedder()
        return self.embedder

    def tool_schemas(self, dialect: str) -> list[dict[str, Any]]:
        """The registered tools, described in one provider's format, ready to send:
        ``"openai-chat"``, ``"openai-responses"``, ``"anthropic"``, ``"gemini"`` or ``"mcp"``."""
        from dar.dialects import tool_schemas

        return tool_schemas(self.tools, dialect)

    def _session(self, correlation_id: str | None) -> tuple[str | None, str | None]:
        """The call's correlation id and parent: given, else the enclosing call's, else
        the ``dar.session()`` around it."""
        if correlation_id is not None and not isinstance(correlation_id, str):
            raise ConfigurationError(
                f"correlation_id must be a str, not {type(correlation_id).__name__}"
            )
        if correlation_id is not None:
            check_correlation_id(correlation_id)
        parent = enclosing_call.get()
        if correlation_id is None:
            correlation_id = parent.correlation_id if parent else current_session.get()
        return correlation_id, None if parent is None else parent.event_id

    def _observed(self, name: str, decision: Ops[Result]) -> AbstractContextManager[Ops[Result]]:
        """The call's decision inside the observer's scope, when one is set."""
        if self.observer is None:
            return nullcontext(decision)
        return self.observer(name, decision)

    def _call_ops(
        self,
        tool: Tool[Any],
        input: Any,
        correlation_id: str | None,
        key: str | None,
        wait_for_approval: float,
        events_reader: Callable[..., Any],
        *,
        own_key: bool = False,
    ) -> Ops[Result]:
        """The decision of one call; waiting for a person's decision when asked to."""

        def once() -> Ops[Result]:
            spec = self._spec(tool, input, correlation_id, key, events_reader, own_key=own_key)
            if self.dry_run and tool.effect is not Effect.READ:
                return self._planned(spec)
            return decide_call(spec)

        if wait_for_approval <= 0:
            return once()
        return approval.waiting(once, wait_for_approval, self.clock)

    def _dry_run_ops(
        self,
        tool: Tool[Any],
        input: Any,
        correlation_id: str | None,
        key: str | None,
        ttl: float,
        events_reader: Callable[..., Any],
    ) -> Ops[Plan]:
        return dryrun.dry_run(self._spec(tool, input, correlation_id, key, events_reader), ttl)

    def _commit_ops(self, plan: Plan, events_reader: Callable[..., Any]) -> Ops[Result]:
        """Commit ``plan``: the registered tool it names runs its arguments once, unless
        the plan is stale."""
        if not isinstance(plan, Plan):
            raise TypeError(f"commit() takes a Plan (from rt.plan()), not {type(plan).__name__}")
        tool = self._tools.get(plan.tool)
        if tool is None:
            raise ConfigurationError(f"the plan's tool {plan.tool!r} is not registered here")
        if not plan.arguments:
            raise ConfigurationError(f"plan {plan.plan_id} would be refused: {plan.reasons[0]}")
        cid = plan.correlation_id  # the session the plan was made in (and keyed for)
        rows = CallRows(new_id(), tool.name, tool.effect.value, cid, plan.search_id, self.clock)

        def live(arguments: str) -> Ops[Result]:
            return decide_call(self._spec(tool, arguments, cid, plan.given_key, events_reader))

        def read(name: str, arguments: str) -> Ops[Result]:
            spec = self._spec(self._tool_named(name), arguments, cid, None, events_reader)
            return decide_call(spec)

        return dryrun.commit(plan, tool, self._rules, rows, live, read)

    def _search_rows(
        self, search_id: str, cid: str | None, request: dict[str, Any], found: Search | None
    ) -> Ops[None]:
        """A search's own rows, one group with the calls it tried nested under it: at the
        start, what was asked; at the end, the tree, the chosen path and why."""
        rows = CallRows(search_id, "speculate", "search", cid, None, self.clock)
        if found is None:
            yield Append(
                rows.row(
                    EventKind.SPECULATED,
                    event_id=search_id,
                    input=canonical_json(request).decode("utf-8"),
                    rejection_reason="search started",
                )
            )
            return
        summary = self._search_record(found)
        yield Append(
            rows.row(
                EventKind.SPECULATED,
                input=canonical_json(request).decode("utf-8"),
                output=canonical_json(summary).decode("utf-8"),
                rejection_reason=f"chose {len(found.best)} plan(s): {found.why}",
            )
        )

    def _search_record(self, found: Search) -> dict[str, Any]:
        """The search as its row and a run's journal keep it: the arguments of a tool that
        redacts personal fields are withheld (a plan of it then cannot be committed from
        the record: ``reasons`` says why)."""
        record = found.as_dict()
        for node in record["tree"]:
            if node["call"] is not None and self._redacts(node["call"]["tool"]):
                node["call"]["arguments"] = {"withheld": WITHHELD}
        for plan in record["best"]:
            if self._redacts(plan["tool"]):
                plan["arguments"] = ""
                plan["reasons"] = [f"its arguments are {WITHHELD}"]
        return record

    def _named(self, candidate: Candidate) -> str:
        """How a search's ``why`` names a call: its tool, and its arguments unless the tool
        redacts personal fields."""
        return candidate.tool if self._redacts(candidate.tool) else search.short(candidate)

    def _redacts(self, name: str) -> bool:
        tool = self._tools.get(name)
        return tool is not None and tool.redactor is not None

    def _found(self, search_id: str, cid: str | None, outcome: Outcome) -> Search:
        """The search's answer: the chosen path's effects as plans, in a chain. The first
        carries the reads before it (its commit reads them again, and is stale if they
        moved); each other one, the key of the plan before it (it commits only after that
        one ran). Reads after an effect saw the world without it: nothing to check."""
        reads: list[tuple[str, str, str]] = []
        best: list[Plan] = []
        for step in outcome.path:
            result, plan = step.result, step.result.extra.get("plan")
            tool = self._tools.get(step.candidate.tool)
            if tool is not None and tool.effect is Effect.READ and result.ok and not best:
                arguments = canonical_input(step.candidate.arguments).decode("utf-8")
                reads.append((tool.name, arguments, dryrun.output_digest(result)))
            elif isinstance(plan, Plan) and result.status is Status.PLANNED:
                after = best[-1].key if best else None
                made = replace(plan, reads=() if best else tuple(reads), after=after)
                best.append(replace(made, search_id=search_id))
        return Search(
            search_id, cid, best, outcome.path, outcome.tree, outcome.why, outcome.score,
            outcome.expansions,
        )  # fmt: skip

    def _tool_named(self, name_or_tool: str | Tool[Any]) -> Tool[Any]:
        if isinstance(name_or_tool, Tool):
            return name_or_tool
        found = self._tools.get(name_or_tool)
        if found is None:
            known = ", ".join(sorted(self._tools)) or "none are registered"
            raise ConfigurationError(f"unknown tool {name_or_tool!r}; the known tools are: {known}")
        return found

    def _keep_plan(self, plan: Plan) -> Plan:
        if plan.arguments:
            self._plans.append(plan)
        return plan

    def plans(self, correlation_id: str | None = None) -> list[Plan]:
        """The plans this runtime made that are neither committed nor discarded."""
        return [
            p for p in self._plans if correlation_id is None or p.correlation_id == correlation_id
        ]

    def discard(self, correlation_id: str | None = None) -> list[Plan]:
        """Forget the session's plans (all when None); returns them."""
        gone = self.plans(correlation_id)
        self._plans = [p for p in self._plans if p not in gone]
        return gone

    def _planned(self, spec: CallSpec) -> Ops[Result]:
        """A dry-run runtime plans every call that is not a read."""
        made = yield from dryrun.dry_run(spec)
        return dryrun.as_result(self._keep_plan(made))

    def _decide_ops(
        self,
        approval_id: str,
        approve: bool,
        by: str,
        note: str | None,
        ttl: float,
        arguments: Any = None,
        events_reader: Callable[..., Any] | None = None,
    ) -> Ops[Approval]:
        def check(found: Approval, canon: bytes) -> Ops[bytes]:
            tool = self._tools.get(found.tool_name)
            if tool is None:
                raise ConfigurationError(
                    f"tool {found.tool_name!r} is not registered in this runtime: an edit "
                    "is checked against the tool's schema and rules, so register it"
                )
            assert events_reader is not None
            return (yield from approval.checked(tool, self._rules, events_reader)(found, canon))

        return approval.decide(
            approval_id,
            approve=approve,
            by=by,
            note=note,
            ttl=ttl,
            now=self.clock(),
            secret=self.approval_secret,
            arguments=arguments,
            check=check,
        )

    def _plan_request_ops(self, plan: Plan) -> Ops[str]:
        """A request bound to exactly what ``plan`` would run, for a person to approve."""
        tool = self._tool_named(plan.tool)
        if not plan.arguments:
            raise ConfigurationError(f"plan {plan.plan_id} would be refused: {plan.reasons[0]}")
        if input_digest(tool, plan.arguments) != plan.input_hash:
            raise ConfigurationError(f"plan {plan.plan_id}: its arguments do not match its hash")
        request = Approval(
            # One request per plan, ever: approving the same plan again finds this one
            # (decided) instead of minting a second grant.
            approval_id=derived_id("approval of plan", plan.plan_id),
            binding=grants.binding(tool.name, plan.input_hash, plan.key, plan.rules_fingerprint),
            tool_name=tool.name,
            effect=tool.effect.value,
            input_hash=plan.input_hash,
            idempotency_key=plan.key,
            rules_fingerprint=plan.rules_fingerprint,
            correlation_id=plan.correlation_id,
            call_id=plan.plan_id,
            input=None if tool.redactor else plan.arguments,
            rule_name=None,
            reason=f"approval of plan {plan.plan_id}",
            status="pending",
            requested_at=self.clock(),
        )
        rows = CallRows(
            plan.plan_id, tool.name, tool.effect.value, plan.correlation_id, None, self.clock
        )
        row = rows.row(
            EventKind.APPROVAL_REQUESTED,
            idempotency_key=plan.key,
            input_hash=plan.input_hash,
            rejection_reason=f"approval of plan {plan.plan_id} (approval {request.approval_id})",
        )
        opened: str = yield RequestApproval(request, row)
        return opened

    def _recorded_approval_ops(self, approval_id: str | Plan) -> Ops[Approval]:
        """A decision as the store holds it (a replay decides nothing again)."""
        if isinstance(approval_id, Plan):
            approval_id = derived_id("approval of plan", approval_id.plan_id)
        return approval.recorded(approval_id)

    def _list_ops(self, status: str | None, correlation_id: str | None) -> Ops[list[Approval]]:
        return approval.listing(status, correlation_id, self.clock())

    def _unknown(self, name: object, arguments: Any, correlation_id: str | None) -> Ops[Result]:
        """The plan that logs and refuses a call to a tool nobody registered."""
        cid, parent = self._session(correlation_id)
        shown = name if isinstance(name, str) else repr(name)
        shown = shown[:200].encode("utf-8", "backslashreplace").decode("utf-8")
        shown = shown.replace("\x00", "\\x00")  # no store can hold NUL in a name
        rows = CallRows(new_id(), shown, "unknown", cid, parent, self.clock)
        return unknown_tool(rows, arguments, sorted(self._tools))

    def _spec(
        self,
        tool: Tool[Any],
        input: Any,
        correlation_id: str | None,
        key: str | None,
        events_reader: Callable[..., Any],
        *,
        own_key: bool = False,
    ) -> CallSpec:
        """Everything the core needs for one call; nested calls inherit the session."""
        if not isinstance(tool, Tool):
            raise TypeError(f"execute() takes a Tool (use @tool(...)), got {type(tool).__name__}")
        if key is not None and (not isinstance(key, str) or not key):
            raise ConfigurationError(
                f"key must be a non-empty str, not {type(key).__name__} {key!r}"
            )
        correlation_id, parent_id = self._session(correlation_id)
        if self._warn_in_memory and tool.effect is not Effect.READ:
            self._warn_in_memory = False
            warnings.warn(IN_MEMORY, UserWarning, stacklevel=_outside_dar())
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
            parent_event_id=parent_id,
            key=key,
            approval_secret=self.approval_secret,
            own_key=own_key,
        )


KNOWN_KEYS = 4096
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # dar/


def _outside_dar() -> int:
    """The stack level of the first caller outside this package (where a warning points)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def _check_ruled(tool: Tool[Any], rules: Iterable[Rule]) -> None:
    """Argument validation is not a rule: an irreversible tool needs a real one."""
    if (
        tool.effect is Effect.IRREVERSIBLE
        and not tool.approval
        and not any(r.applies(tool.name, tool.effect) for r in rules)
    ):
        raise ConfigurationError(unruled(tool.name))


def remember(runtime: RuntimeBase, result: Result) -> Result:
    """Note a completed key (an LRU of at most ``KNOWN_KEYS``); returns ``result``."""
    if result.key is not None and result.status in (Status.EXECUTED, Status.CACHED):
        known = runtime._known
        known[result.key] = None
        known.move_to_end(result.key)
        if len(known) > KNOWN_KEYS:
            known.popitem(last=False)
    return result


def search_from(response: dict[str, Any]) -> Search:
    """A search as a durable run journaled it: what a resumed run gets instead of
    searching again (the path's steps show what each node showed)."""
    tree = tuple(Node.from_dict(n) for n in response["tree"])
    path = tuple(
        Step(n.candidate, Result(Status(n.status), output=n.shown))
        for n in tree
        if n.chosen and n.candidate is not None
    )
    return Search(
        response["search_id"],
        response["session"],
        [Plan.from_json(json.dumps(p)) for p in response["best"]],
        path,
        tree,
        response["why"],
        response["score"],
        response["expansions"],
    )
