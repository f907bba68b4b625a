"""The asyncio runtime, the one facade written by hand: `dar.runtime.sync` is generated
from this file by ``tools/unasync.py`` (``make unasync``; ``make lint`` fails when the
generated file is stale).

Each public method sets up one decision of the core and hands it to the executor of
`dar.runtime.execute`, which is where the sync and async runtimes truly differ. Handlers
and rule checks may be coroutine functions (plain functions work too); store operations
run in worker threads, so a busy database never blocks the event loop.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from dar._core import canonical_json
from dar.agents import agent_of, registered
from dar.audit.replay import Replayer, load_replay
from dar.context import CurrentCall, check_correlation_id, current_run, enclosing_call, session
from dar.core import dryrun, runs, saga, search
from dar.core.dryrun import Plan
from dar.core.ids import new_id
from dar.core.ops import CallTool, LogFilter, Op, Ops, ReadLog
from dar.core.runs import RunLost, RunSuspended
from dar.effects import Effect, Status
from dar.embedding import Embedder
from dar.errors import ConfigurationError, ModeError
from dar.records import Approval, Event, Result, RunRecord, RunResult, SagaRecord
from dar.redact import Redactor
from dar.rules import Rule
from dar.runtime.base import RuntimeBase, remember, search_from
from dar.runtime.execute import SANDBOX, AsyncExecutor, acall_agent
from dar.runtime.journal import (
    Run,
    outside_the_run,
    result_from,
    result_response,
    running,
    shown_request,
    tool_request,
)
from dar.speculate import Candidate, Propose, Score, Search
from dar.store import Store, store_of
from dar.tools import Tool


class AsyncRuntime(RuntimeBase):
    """Run tool calls through rules, idempotency and the event log.

    >>> rt = AsyncRuntime("sqlite:///agent.db", tools=[dispatch_order], rules=[covers_zone])
    >>> result = await rt.call("dispatch_order", '{"order_id": "ORD-1"}', correlation_id="s-1")
    >>> result.status
    <Status.EXECUTED: 'executed'>

    ``store`` is a URL (``sqlite:///file.db``, ``sqlite://:memory:``, ``postgresql://...``)
    or a store object; without one the runtime keeps everything in memory (and warns at
    the first call that changes anything). ``tools`` registers tools for ``call``.
    ``wait`` bounds how long a duplicate waits for the call in progress before answering
    ``IN_PROGRESS``. ``clock`` returns Unix seconds (inject one in tests).
    ``replay=CORRELATION_ID`` serves every call from that recorded session instead, in
    order, running no handler and writing nothing; the first call that differs raises
    ``ReplayDivergence``. ``dry_run=True`` plans every call that is not a read.
    ``embedder`` embeds the texts ``Similar`` guards compare (any callable texts ->
    vectors; None: the offline default of the ``[semantic]`` extra).
    """

    def __init__(
        self,
        store: str | Store | None = None,
        *,
        tools: Iterable[Tool[Any]] = (),
        rules: Iterable[Rule] = (),
        wait: float = 30.0,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        replay: str | None = None,
        dry_run: bool = False,
        embedder: Embedder | None = None,
    ) -> None:
        super().__init__(
            tools=tools,
            rules=rules,
            wait=wait,
            clock=clock,
            owner=owner,
            in_memory=store is None,
            dry_run=dry_run,
            replay=replay,
            embedder=embedder,
        )
        self.store: Store = store_of(store)
        self._executor = AsyncExecutor(self)
        self._replayer: Replayer | None = None

    async def _drive(self, gen: Ops[Any]) -> Any:
        return await self._executor.drive(gen)

    async def _replaying(self) -> Replayer | None:
        """The recorded session this runtime serves (read at first use); None when live."""
        if self._replay is None:
            return None
        if self._replayer is None:
            self._replayer = await self._drive(load_replay(self._replay))
        return self._replayer

    async def _run(self, op: Op) -> Any:
        """Execute one operation, as a decision's driver would (for tests of the core)."""
        return await self._executor.run(op)

    async def execute(
        self,
        tool: Tool[Any],
        input: Any,
        *,
        correlation_id: str | None = None,
        key: str | None = None,
        wait_for_approval: float = 0,
    ) -> Result:
        """Run one call. A refusal or a failing handler is a status, never an exception.

        ``input`` is a dict, or JSON text as a model sends it. A handler interrupted while
        it runs (Ctrl-C, or the cancellation of this call) is logged ``cancelled`` and the
        interruption re-raised."""
        run = running()
        if run is not None and run.rt is self and enclosing_call.get() is None:
            journaled: Result = await self._journaled(
                run,
                tool.name,
                input,
                lambda: self._execute(tool, input, correlation_id, key, wait_for_approval),
                tool.signature.load_output,
                tool.redactor,
            )
            return journaled
        return await self._execute(tool, input, correlation_id, key, wait_for_approval)

    async def _execute(
        self,
        tool: Tool[Any],
        input: Any,
        correlation_id: str | None,
        key: str | None,
        wait_for_approval: float,
    ) -> Result:
        replayer = await self._replaying()
        if replayer is not None:
            return replayer.next(tool, input)
        planned = self._call_ops(tool, input, correlation_id, key, wait_for_approval, self.events)
        return remember(self, await self._drive_call(tool.name, planned))

    async def _drive_call(self, name: str, planned: Ops[Result]) -> Result:
        """Drive one call's decision, inside the observer's scope (a span) when one is set."""
        with self._observed(name, planned) as observed:
            result: Result = await self._drive(observed)
        return result

    async def _step(self, op: CallTool) -> Result:
        """A saga's step: an ordinary call, under the key the saga made for it (stored
        where no key a tool or a model gives can reach it)."""
        planned = self._call_ops(
            op.tool, op.input, op.correlation_id, op.key, 0, self.events, own_key=True
        )
        return remember(self, await self._drive_call(op.tool.name, planned))

    async def call(
        self,
        name: str,
        arguments: str | bytes | Mapping[str, Any] | None = None,
        *,
        correlation_id: str | None = None,
        key: str | None = None,
        wait_for_approval: float = 0,
    ) -> Result:
        """Run the registered tool ``name`` on ``arguments``: JSON text as the model sent
        it, or a dict. An unknown name, arguments that are not a JSON object, or arguments
        that do not fit the tool's signature are refused (``REJECTED``) and logged."""
        tool = self._tools.get(name) if isinstance(name, str) else None
        if tool is None:
            run = running()
            if run is not None and run.rt is self and enclosing_call.get() is None:
                refused: Result = await self._journaled(
                    run,
                    str(name),
                    arguments,
                    lambda: self._drive_call(
                        str(name), self._unknown(name, arguments, correlation_id)
                    ),
                    None,
                )
                return refused
            return await self._drive_call(str(name), self._unknown(name, arguments, correlation_id))
        return await self.execute(
            tool,
            arguments,
            correlation_id=correlation_id,
            key=key,
            wait_for_approval=wait_for_approval,
        )

    async def plan(
        self,
        tool: str | Tool[Any],
        arguments: str | bytes | Mapping[str, Any] | None = None,
        *,
        correlation_id: str | None = None,
        key: str | None = None,
        ttl: float = dryrun.DEFAULT_TTL,
    ) -> Plan:
        """Everything the call would do but the effect: parse, validate, the key's state,
        the rules and the tool's ``simulate`` (never the handler). Writes one ``planned``
        row; ``commit(plan)`` within ``ttl`` seconds runs exactly that call."""
        replayer = await self._replaying()
        if replayer is not None:
            cid, _parent = self._session(correlation_id)
            return self._keep_plan(replayer.next_plan(self._tool_named(tool), arguments, cid))
        made: Plan = await self._drive(
            self._dry_run_ops(
                self._tool_named(tool), arguments, correlation_id, key, ttl, self.events
            )
        )
        return self._keep_plan(made)

    async def commit(self, plan: Plan) -> Result:
        """Run the planned call once, or answer ``stale`` (running nothing) when the rules
        in force, the key's state or the clock moved since the plan. A replay answers with
        the recorded commit; a dry run, with the plan itself."""
        replayer = await self._replaying()
        if replayer is not None:
            result = replayer.next(self._tool_named(plan.tool), plan.arguments)
        elif self.dry_run:
            result = dryrun.as_result(plan)
        else:
            group = None
            if plan.search_id is not None:  # the commit joins the search's group
                group = enclosing_call.set(CurrentCall(plan.search_id, plan.correlation_id))
            try:
                result = await self._drive_call(plan.tool, self._commit_ops(plan, self.events))
            finally:
                if group is not None:
                    enclosing_call.reset(group)
        if plan in self._plans:
            self._plans.remove(plan)
        return remember(self, result)

    async def commit_all(self, plans: str | Sequence[Plan] | None = None) -> list[Result]:
        """Commit plans in order: a session's (by correlation id; all of this runtime's when
        None), or a list of plans, such as a dry run's (``live.commit_all(dry.plans())``)."""
        chosen = self.plans(plans) if plans is None or isinstance(plans, str) else list(plans)
        return [await self.commit(p) for p in chosen]

    async def speculate(
        self,
        correlation_id: str,
        *,
        propose: Propose,
        score: Score,
        budget: int = 64,
        depth: int = 3,
        seed: int = 0,
        deadline: float | None = None,
    ) -> Search:
        """Search the calls ``propose`` suggests, ``depth`` calls deep, before any effect:
        reads run for real (once per distinct input in the whole search), every other
        effect is only planned (its ``simulate`` gives the preview), and no handler but a
        read's runs. Monte Carlo Tree Search (UCT) expands at most ``budget`` nodes, within
        ``deadline`` seconds when given; ``seed`` makes it repeatable. ``search.best`` are
        the chosen path's plans: `commit_all(search.best)` runs them, each once. The search
        is one group in the log; inside a durable run it is one journaled step; a replay
        answers with the recorded search."""
        replayer = await self._replaying()
        if replayer is not None:  # the recorded search: nothing is searched, read or planned
            return search_from(replayer.next_search())
        cid, _parent = self._session(correlation_id)
        request = {"speculate": cid, "budget": budget, "depth": depth, "seed": seed}
        run = running()
        if run is None or run.rt is not self or enclosing_call.get() is not None:
            return await self._speculate(cid, request, propose, score, deadline)
        index, text, digest, recorded = run.journal.next("step", "speculate", request)
        if recorded is not None:
            return search_from(recorded.response)
        started = time.perf_counter()
        with outside_the_run(), run.journal.giving_back(index):
            found: Search = await self._speculate(cid, request, propose, score, deadline)
        recorded_as = self._search_record(found)
        await run.write((index, "step", "speculate", text, digest), recorded_as, 0, started)
        return found

    async def _speculate(
        self,
        cid: str | None,
        request: dict[str, Any],
        propose: Propose,
        score: Score,
        deadline: float | None,
    ) -> Search:
        search_id = new_id()
        await self._drive(self._search_rows(search_id, cid, request, None))
        limit = None if deadline is None else time.monotonic() + deadline
        searching = search.search(
            cid,
            budget=request["budget"],
            depth=request["depth"],
            seed=request["seed"],
            deadline=limit,
            clock=time.monotonic,
            named=self._named,
        )
        tried: dict[str, Result] = {}
        sandbox, inside = SANDBOX.set(True), enclosing_call.set(CurrentCall(search_id, cid))
        try:
            asked = next(searching)
            while True:
                if isinstance(asked, search.Propose):
                    answer = await acall_agent(propose, [asked.branch])
                elif isinstance(asked, search.Try):
                    answer = await self._try(asked.candidate, cid, tried)
                else:
                    answer = await acall_agent(score, [asked.branch])
                asked = searching.send(answer)
        except StopIteration as stop:
            outcome: search.Outcome = stop.value
        finally:
            enclosing_call.reset(inside)
            SANDBOX.reset(sandbox)
        found = self._found(search_id, cid, outcome)
        await self._drive(self._search_rows(search_id, cid, request, found))
        return found

    async def _try(self, candidate: Candidate, cid: str | None, tried: dict[str, Result]) -> Result:
        """One call of a search: a read runs (once per distinct input in the search), an
        effect is planned, an unknown tool is refused; each is logged once."""
        known = tried.get(candidate.identity)
        if known is not None:
            return known
        tool, arguments = self._tools.get(candidate.tool), candidate.arguments
        if tool is None:
            known = await self._drive_call(
                candidate.tool, self._unknown(candidate.tool, arguments, cid)
            )
        elif tool.effect is Effect.READ:
            known = await self._drive_call(
                tool.name, self._call_ops(tool, arguments, cid, None, 0, self.events)
            )
        else:
            ops = self._dry_run_ops(tool, arguments, cid, None, dryrun.DEFAULT_TTL, self.events)
            known = dryrun.searched(await self._drive(ops), tool.simulate is not None)
        tried[candidate.identity] = known
        return known

    def saga(
        self, saga_id: str, *, correlation_id: str | None = None, lease: float = saga.LEASE
    ) -> AsyncSagaScope:
        """A durable saga: ``async with rt.saga("checkout-ORD-1") as saga: await saga.call(...)``.
        A step that does not complete, or an exception in the block, undoes the completed
        steps (their tools' ``compensate``), newest first, each exactly once."""
        cid, _parent = self._session(correlation_id)
        return AsyncSagaScope(self, saga_id, cid, lease)

    async def recover_sagas(self, *, stuck: bool = False) -> list[str]:
        """Finish every open saga whose worker's lease ran out: settle its unknown steps,
        then compensate (never resume it forward). ``stuck=True`` also retries sagas
        waiting for an operator. Returns their ids. The forward tools must be registered.
        A replay or a dry run recovers nothing."""
        if self.mode is not None:
            return []
        done = await self._drive(saga.recover_all(self.owner, self._tools, self.clock, stuck=stuck))
        return [s.saga_id for s in done]

    async def sagas(self, state: str | None = None) -> list[SagaRecord]:
        """Sagas, oldest first, in one state (``saga.STATES``) or all."""
        found: list[SagaRecord] = await self._drive(saga.listing(state))
        return found

    async def approvals(
        self, status: str | None = None, correlation_id: str | None = None
    ) -> list[Approval]:
        """Approval requests, newest first: ``pending``, ``approved`` (unused, unexpired),
        ``denied``, ``expired`` or ``used``; all when ``status`` is None."""
        found: list[Approval] = await self._drive(self._list_ops(status, correlation_id))
        return found

    async def approve(
        self,
        approval_id: str | Plan,
        by: str,
        note: str | None = None,
        ttl: float = 3600,
        *,
        arguments: Mapping[str, Any] | str | None = None,
    ) -> Approval:
        """Approve a pending request, or a plan (the person approves the preview they saw):
        the same call, made (or committed) within ``ttl`` seconds, runs once. Raises when
        there is nothing pending to decide. A replay answers with the recorded decision.

        ``arguments`` approve the call edited to them (a dict or JSON text): checked now
        against the tool's schema and rules (a ``Deny`` refuses the edit, raising
        `ConfigurationError`), and the waiting call runs on them instead, once."""
        if self._replay is not None:
            recorded: Approval = await self._drive(self._recorded_approval_ops(approval_id))
            return recorded
        if isinstance(approval_id, Plan):
            if arguments is not None:
                raise ConfigurationError("a plan is approved as previewed: plan the edited call")
            approval_id = str(await self._drive(self._plan_request_ops(approval_id)))
        decided: Approval = await self._drive(
            self._decide_ops(approval_id, True, by, note, ttl, arguments, self.events)
        )
        return decided

    async def deny(self, approval_id: str, by: str, reason: str | None = None) -> Approval:
        """Refuse a pending request: that exact call answers ``rejected`` with ``reason``.
        A replay answers with the recorded decision."""
        if self._replay is not None:
            recorded: Approval = await self._drive(self._recorded_approval_ops(approval_id))
            return recorded
        decided: Approval = await self._drive(self._decide_ops(approval_id, False, by, reason, 0))
        return decided

    async def events(
        self,
        *,
        correlation_id: str | None = None,
        tool: str | None = None,
        status: str | None = None,
        key: str | None = None,
        since: dt.datetime | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Read the event log back, in order, as typed records."""
        read = ReadLog(LogFilter(correlation_id, tool, status, key, since, limit))
        events: list[Event] = await self._executor.store(read.apply)
        return events

    async def start(
        self, agent: Callable[..., Any], session_id: str, *args: Any, lease: float = runs.LEASE
    ) -> RunResult:
        """Run ``agent(*args)`` (declared with ``@dar.agent``) as the durable run
        ``session_id``: every model call, tool call and `dar.step` inside it is journaled,
        so a crash or a person's decision resumes it (``resume()``) without asking the
        model again. A run that already ended answers as it ended; one another worker
        holds answers ``running``. A call that needs approval suspends the run. A replay
        or a dry run starts no run (`ModeError`): a run's journal is a write."""
        if self.mode is not None:
            raise ModeError(f"this runtime is a {self.mode}: it starts no durable run")
        name = agent_of(agent)
        check_correlation_id(session_id)
        arguments = canonical_json(list(args)).decode("utf-8")
        record, mine = await self._drive(
            runs.start(session_id, name, arguments, self.owner, self.clock(), lease)
        )
        if not mine:
            return runs.result_of(record)
        return await self._run_agent(record, agent, list(args), lease)

    async def resume(self, *, lease: float = runs.LEASE) -> list[RunResult]:
        """Run again, from its journal, every run that crashed (its worker's lease ran out)
        or that is suspended on an approval a person has now decided. Runs of agents this
        process has not imported, of coroutine agents on a blocking `Runtime`, and runs
        another worker takes first, are left alone. A replay or a dry run resumes nothing."""
        if self.mode is not None:
            return []
        done = []
        for record in await self._drive(runs.due(self.clock())):
            agent = registered(record.agent)
            if agent is None or (
                inspect.iscoroutinefunction(agent) and not inspect.iscoroutinefunction(self.call)
            ):
                continue  # not imported here, or async in a blocking runtime: not ours to run
            taken = await self._drive(runs.take_over(record, self.owner, self.clock(), lease))
            if taken is None:
                continue
            done.append(await self._run_agent(taken, agent, json.loads(taken.arguments), lease))
        return done

    async def runs(self, state: str | None = None) -> list[RunRecord]:
        """Durable runs, oldest first, in one state (``running``, ``suspended``,
        ``finished``, ``failed``) or all."""
        found: list[RunRecord] = await self._drive(runs.listing(state))
        return found

    async def _run_agent(
        self, record: RunRecord, agent: Callable[..., Any], args: list[Any], lease: float
    ) -> RunResult:
        journal = await self._drive(runs.journal(record.session_id))
        run = Run(self, record, journal, lease)
        token = current_run.set(run)
        try:
            with session(record.session_id):
                output = await acall_agent(agent, args)
            runs.output_text(output)  # no JSON form: the run fails here, not stuck running
            result = RunResult(record.session_id, runs.FINISHED, output)
        except RunSuspended as suspended:
            approval = suspended.approval_id
            result = RunResult(record.session_id, runs.SUSPENDED, None, None, approval)
        except RunLost:
            return RunResult(record.session_id, runs.RUNNING)  # another worker drives it now
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            result = RunResult(record.session_id, runs.FAILED, None, error)
        finally:
            current_run.reset(token)
        try:
            async with run.lock:  # after the step a call running beside it may be recording
                await self._drive(runs.end(run.record, result, journal.tokens_saved, self.clock()))
        except RunLost:  # this worker outlived its lease: the run is another's now
            return RunResult(record.session_id, runs.RUNNING)
        return result

    async def _journaled(
        self,
        run: Run,
        name: str,
        arguments: Any,
        live: Callable[[], Any],
        load: Callable[[Any], Any] | None,
        redactor: Redactor | None = None,
    ) -> Result:
        """A tool call inside a run: from the journal when it was recorded, else live and
        then recorded. A call that waits for a person suspends the run (it is not
        recorded: the resumed run asks again, and then it runs). The tool's personal
        fields are journaled as salted hashes, as in its own rows."""
        shown = None
        if redactor is not None:
            shown = shown_request(name, arguments, redactor, await self._drive(runs.salt()))
        index, text, digest, recorded = run.journal.next(
            "tool", name, tool_request(name, arguments), shown
        )
        if recorded is not None:
            return result_from(recorded.response, load)
        started = time.perf_counter()
        with outside_the_run(), run.journal.giving_back(index):
            result: Result = await live()
        if result.status is Status.AWAITING_APPROVAL:
            raise RunSuspended(result.approval_id)
        await run.write((index, "tool", name, text, digest), result_response(result), 0, started)
        return result

    async def close(self) -> None:
        """Write buffered rows and close the store."""
        await self._executor.close()

    async def __aenter__(self) -> AsyncRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncSagaScope:
    """``async with rt.saga(...) as saga``: steps run with ``saga.call``; ``saga.result``
    says how it ended (``completed``, ``compensated``, ``compensation_failed``,
    ``needs_operator``). A step that does not complete ends the block quietly, after
    compensating; an exception in the block compensates and propagates. A
    ``KeyboardInterrupt`` leaves the saga to ``recover_sagas``."""

    def __init__(
        self, rt: AsyncRuntime, saga_id: str, correlation_id: str | None, lease: float
    ) -> None:
        self._rt, self.saga_id, self.correlation_id = rt, saga_id, correlation_id
        self.lease = lease
        self._saga: saga.Saga | None = None
        #: In a replay: the recorded saga's steps, and how it ended.
        self._replayed: tuple[Replayer, str | None] | None = None

    async def __aenter__(self) -> AsyncSagaScope:
        replayer = await self._rt._replaying()
        if replayer is not None:
            self._replayed = replayer.next_saga(self.saga_id)
            return self
        if self._rt.dry_run:
            return self  # a group of plans: nothing is written for the saga itself
        self._saga = await self._rt._drive(
            saga.begin(
                self.saga_id, self.correlation_id, self._rt.owner, self._rt.clock, self.lease
            )
        )
        return self

    async def call(self, name: str, arguments: Any = None) -> Result:
        """One step; raises `SagaAborted` (caught by the block) when it does not complete.
        In a replay the step is served from the record; in a dry run it is planned."""
        tool = self._rt._tool_named(name)
        if self._replayed is not None:
            result = self._replayed[0].next(tool, arguments)
        elif self._rt.dry_run:
            spec = self._rt._spec(tool, arguments, self.correlation_id, None, self._rt.events)
            result = dryrun.as_result(await self._rt._drive(dryrun.dry_run(spec)))
        else:
            state = self._state()
            result = await self._rt._drive(
                saga.forward(state, tool, arguments, self._rt._tools, self._rt.clock)
            )
        if not result.ok and result.status is not Status.PLANNED:
            raise saga.SagaAborted(self.saga_id, result, self.result)
        return result

    async def __aexit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if self._rt.mode is not None:  # a replay or a dry run undoes nothing: nothing was done
            return isinstance(exc, saga.SagaAborted)
        state = self._state()
        if exc is None and state.state == saga.OPEN:
            await self._rt._drive(saga.finish(state, self._rt.clock))
        elif isinstance(exc, Exception) and state.state == saga.OPEN:
            await self._rt._drive(saga.compensate(state, self._rt._tools, self._rt.clock))
        return isinstance(exc, saga.SagaAborted)

    @property
    def result(self) -> str:
        """How the saga ended (or stands): in a replay as recorded; ``planned`` in a dry run."""
        if self._replayed is not None:
            return self._replayed[1] or "unknown"
        if self._saga is None and self._rt.dry_run:
            return "planned"
        return self._state().state

    def _state(self) -> saga.Saga:
        if self._saga is None:
            raise RuntimeError("use the saga as a context manager: async with rt.saga(...)")
        return self._saga
