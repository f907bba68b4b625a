"""Exactly once, shown for the interleavings nobody thought of.

A Hypothesis state machine drives the real runtime (on a SQLite file and on Postgres) and
the reference model in `tests/support/model.py` side by side: calls from several workers across all
four effects, inputs from a small pool so keys collide, explicit keys with other inputs,
bursts of concurrent duplicates in threads, failing handlers, workers killed with SIGKILL at
a chosen point, the clock moving past windows and leases, rules added and removed, reconcile
answers and operator resolutions. After every step: every effect ran exactly as often as
the model allows, every status and output matches, and the log only ever grew.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import dar
from dar import Effect, Runtime, Status, StoreError
from dar.core.decide import given_key
from dar.core.ops import GetClaim, Resolve
from dar.core.rows import resolved_row
from tests.conftest import Clock, fresh_schema
from tests.support.calls import Calls, MakeRuntime, abandon_claim, make_tool, statuses
from tests.support.coverage import STATS
from tests.support.exactly_once_tools import (
    POINTS,
    SPECS,
    allow_irreversible,
    build_tools,
    count_runs,
    deny_rule,
)
from tests.support.model import Model, effect_id
from tests.support.runtimes import RUNTIME_KINDS
from tests.support.runtimes import make as make_runtime

CTX = mp.get_context("forkserver")
VALUES = st.integers(0, 2)
TOOLS = st.sampled_from(sorted(SPECS))
MUTATING = st.sampled_from(["t_local", "t_ext", "t_irr"])
EXPLICIT = st.sampled_from([None, None, "shared-key"])


class ExactlyOnce(RuleBasedStateMachine):
    """Set ``base_url`` before running: a SQLite folder (``sqlite:``) or a Postgres URL."""

    base_url = ""
    kind = "sync"  # which runtime the in-process and worker-process calls use

    def __init__(self) -> None:
        super().__init__()
        self.marks = Path(tempfile.mkdtemp(prefix="dar-marks-"))
        if self.base_url.startswith("sqlite:"):
            self.url = f"sqlite:///{self.marks / 'agent.db'}"
        else:
            self.url = f"{self.base_url}?schema={fresh_schema()}"
        self.model = Model(now=1_900_000_000.0)
        self.fail = False
        self.reconcile_answer: Any = None
        self.tools = build_tools(
            self.marks,
            fail_next=lambda: self.fail,
            reconcile_answer=lambda: self.reconcile_answer,
            overlap=lambda: 0.05 if self.in_burst else 0.0,
        )
        self.in_burst = False
        self.workers: list[Runtime] = []
        self.log: list[tuple[Any, ...]] = []
        STATS["examples"] += 1

    @initialize()
    def start(self) -> None:
        for i in range(3):
            rt = make_runtime(
                self.kind, self.url, clock=lambda: self.model.now, wait=0, owner=f"worker-{i}"
            )
            self.workers.append(rt)
        self.workers[0].add_rule(allow_irreversible)
        self.rules_in_force: dict[str, dar.Rule] = {allow_irreversible.name: allow_irreversible}
        self.deny_rules: dict[str, tuple[str, int]] = {}
        self.crashed: dict[str, tuple[str, int, str | None]] = {}

    def real_key(self, model_key: str) -> str:
        """The store's key for the model's: a given key is stored salted and hashed."""
        tool_name, sep, given = model_key.partition(":key:")
        if not sep:
            return model_key
        return given_key(tool_name, given, self.workers[0].store.redaction_salt())

    def teardown(self) -> None:
        for rt in self.workers:
            rt.close()

    def sync_rules(self) -> None:
        for rt in self.workers:
            for r in list(rt.rules):
                if r.name not in self.rules_in_force:
                    rt.remove_rule(r)
            for name, r in self.rules_in_force.items():
                if all(x.name != name for x in rt.rules):
                    rt.add_rule(r)

    def expected_output(self, name: str, v: int) -> dict[str, Any]:
        return {"tool": name, "v": v, "run": self.model.runs(SPECS[name], {"v": v}) + 1}

    # --- steps ---------------------------------------------------------------------------

    @rule(worker=st.integers(0, 2), name=TOOLS, v=VALUES, explicit=EXPLICIT, fail=st.booleans())
    def call(self, worker: int, name: str, v: int, explicit: str | None, fail: bool) -> None:
        spec = SPECS[name]
        if spec.effect is dar.Effect.READ:
            explicit = None
        self.sync_rules()
        out = self.expected_output(name, v)
        expect = self.model.call(spec, {"v": v}, explicit=explicit, fail=fail, output=out)
        self.fail = fail
        try:
            if expect.raises is not None:
                with pytest.raises(expect.raises):
                    self.workers[worker].execute(self.tools[name], {"v": v}, key=explicit)
                return
            res = self.workers[worker].execute(self.tools[name], {"v": v}, key=explicit)
        finally:
            self.fail = False
        STATS["calls"] += 1
        STATS[f"status:{res.status.value}"] += 1
        assert res.status == expect.status, (name, v, explicit, res, expect)
        if expect.status in (Status.EXECUTED, Status.CACHED):
            assert res.output == expect.output, (res, expect)

    @rule(
        name=st.sampled_from(["t_local", "t_ext"]),
        v=VALUES,
        n=st.integers(2, 4),
        processes=st.booleans(),
    )
    def burst(self, name: str, v: int, n: int, processes: bool) -> None:
        """Concurrent duplicates of one call, in threads or in worker processes, released
        together by a barrier so that the races really overlap."""
        spec = SPECS[name]
        key = self.model.key_of(spec, {"v": v}, None)
        c = self.model.keys.get(key)
        if c is not None and c.state in ("running", "indeterminate"):
            return  # the model covers these with sequential calls
        self.sync_rules()
        out = self.expected_output(name, v)
        first = self.model.call(spec, {"v": v}, output=out)
        barrier = threading.Barrier(n)
        results: list[Any] = []
        errors: list[BaseException] = []
        runtimes = [
            make_runtime(
                self.kind,
                self.workers[0].store,
                clock=lambda: self.model.now,
                wait=30,
                rules=self.workers[0].rules,
                owner=f"burst-{i}",
            )
            for i in range(n)
        ]

        def go(rt: Runtime) -> None:
            try:
                barrier.wait()
                results.append(rt.execute(self.tools[name], {"v": v}))
            except BaseException as exc:
                errors.append(exc)

        if processes:
            results = self.process_burst(name, v, n)
        else:
            self.in_burst = True
            try:
                threads = [threading.Thread(target=go, args=(rt,)) for rt in runtimes]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            finally:
                self.in_burst = False
        assert not errors, errors
        STATS["bursts in processes" if processes else "bursts in threads"] += 1
        STATS["bursts"] += 1
        STATS["burst calls"] += n
        got = Counter(r.status for r in results)
        if first.status == Status.EXECUTED:
            assert got == {Status.EXECUTED: 1, Status.CACHED: n - 1}, got
        else:
            assert got == {first.status: n}, (got, first)
        if first.status in (Status.EXECUTED, Status.CACHED):
            assert all(r.output == first.output for r in results)

    def process_burst(self, name: str, v: int, n: int) -> list[Any]:
        barrier = CTX.Barrier(n)
        out = CTX.Queue()
        args = (
            self.url,
            str(self.marks),
            name,
            v,
            self.model.now,
            barrier,
            out,
            sorted(self.model.denied),
            self.model.irreversible_rule,
            self.kind,
        )
        procs = [CTX.Process(target=_burst_call, args=args) for _ in range(n)]
        for p in procs:
            p.start()
        statuses = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        return [dar.Result(Status(status), output=output) for status, output in statuses]

    @rule(name=MUTATING, v=VALUES, explicit=EXPLICIT, point=st.sampled_from(POINTS))
    def crash(self, name: str, v: int, explicit: str | None, point: str) -> None:
        """A worker process claims the call and is killed (SIGKILL) at ``point``."""
        spec = SPECS[name]
        if not self.model.call_is_claimable(spec, {"v": v}, explicit):
            return
        self.sync_rules()
        proc = CTX.Process(
            target=_crash_call,
            args=(self.url, str(self.marks), name, v, explicit, point, self.model.now, self.kind),
        )
        proc.start()
        proc.join(120)
        assert proc.exitcode == -signal.SIGKILL, f"worker exit code {proc.exitcode}"
        assert self.model.crash(spec, {"v": v}, point, explicit=explicit)
        self.crashed[self.model.key_of(spec, {"v": v}, explicit)] = (name, v, explicit)
        STATS["crashes"] += 1
        STATS[f"crash:{point}"] += 1

    @rule(seconds=st.sampled_from([10, 31, 101]))
    def advance_clock(self, seconds: int) -> None:
        self.model.now += seconds
        STATS["clock moves"] += 1

    @rule(name=TOOLS, v=VALUES)
    def add_deny_rule(self, name: str, v: int) -> None:
        r = deny_rule(name, v)
        self.rules_in_force[r.name] = r
        self.deny_rules[r.name] = (name, v)
        self.model.denied = set(self.deny_rules.values())
        STATS["rule changes"] += 1

    @precondition(lambda self: len(self.rules_in_force) > 0)
    @rule(data=st.data())
    def remove_rule(self, data: st.DataObject) -> None:
        self.drop_rule(data.draw(st.sampled_from(sorted(self.rules_in_force))))

    def drop_rule(self, name: str) -> None:
        del self.rules_in_force[name]
        if name == allow_irreversible.name:
            self.model.irreversible_rule = False
        else:
            del self.deny_rules[name]
            self.model.denied = set(self.deny_rules.values())
        STATS["rule changes"] += 1

    @precondition(lambda self: not self.model.irreversible_rule)
    @rule()
    def restore_irreversible_rule(self) -> None:
        self.rules_in_force[allow_irreversible.name] = allow_irreversible
        self.model.irreversible_rule = True

    @rule(answer=st.sampled_from([None, {"found": "T-1"}, "raise"]))
    def set_reconcile_answer(self, answer: Any) -> None:
        self.reconcile_answer = answer
        self.model.reconcile_answer = answer
        STATS["reconcile answers"] += 1

    @rule(data=st.data(), executed=st.booleans())
    def operator_resolves(self, data: st.DataObject, executed: bool) -> None:
        stuck = sorted(
            k for k, c in self.model.keys.items() if c.state in ("indeterminate", "running")
        )
        if not stuck:
            return
        key = data.draw(st.sampled_from(stuck))
        output = {"operator": True} if executed else None
        store = self.workers[0].store
        claim = store.get_claim(GetClaim(self.real_key(key)))
        assert claim is not None
        recorded = None if output is None else '{"operator":true}'
        ev = resolved_row(claim, executed, recorded, None, self.model.now)
        # The operator knows the worker is gone (it was killed): force a live lease too.
        store.resolve(Resolve(self.real_key(key), executed, recorded, self.model.now, ev, True))
        assert self.model.resolve(key, executed, output)
        STATS["operator resolutions"] += 1

    @rule(
        name=MUTATING,
        v=VALUES,
        point=st.sampled_from(POINTS),
        answer=st.sampled_from([None, {"found": "T-1"}, "raise"]),
    )
    def crash_then_retry_after_the_lease(self, name: str, v: int, point: str, answer: Any) -> None:
        """The whole recovery path in one step: a worker dies, its lease runs out, and the
        call is retried (re-run, reconciled, or left indeterminate, by effect)."""
        before = STATS["crashes"]
        self.crash(name=name, v=v, explicit=None, point=point)
        if STATS["crashes"] == before:
            return  # not claimable now
        self.set_reconcile_answer(answer)
        self.advance_clock(SPECS[name].lease + 1)
        self.call(worker=1, name=name, v=v, explicit=None, fail=False)
        STATS["crash-and-retry sequences"] += 1

    @precondition(lambda self: bool(self.crashed))
    @rule(data=st.data(), worker=st.integers(0, 2))
    def retry_a_crashed_call(self, data: st.DataObject, worker: int) -> None:
        """The agent retries a call whose worker died: in progress, re-run, reconciled or
        indeterminate, depending on the effect, the lease and the reconcile answer."""
        name, v, explicit = self.crashed[data.draw(st.sampled_from(sorted(self.crashed)))]
        self.call(worker=worker, name=name, v=v, explicit=explicit, fail=False)
        STATS["retries of crashed calls"] += 1

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def effects_match_the_model(self) -> None:
        if not self.workers:
            return
        STATS["steps checked"] += 1
        for name in SPECS:
            for v in range(3):
                eid = effect_id(name, v)
                real = count_runs(self.marks, eid)
                assert real == self.model.effects.get(eid, 0), (eid, real, self.model.effects)

    @invariant()
    def the_log_only_grows(self) -> None:
        if not self.workers:
            return
        rows = [
            (
                e.seq,
                e.event_id,
                e.status,
                e.idempotency_key,
                e.input_hash,
                repr(e.output),
                e.rejection_reason,
                e.attempt,
            )
            for e in self.workers[0].events()
        ]
        assert rows[: len(self.log)] == self.log, "the event log was rewritten"
        self.log = rows

    @invariant()
    def cached_outputs_equal_the_record(self) -> None:
        if not self.workers:
            return
        for key, c in self.model.keys.items():
            if c.state != "done":
                continue
            claim = self.workers[0].store.get_claim(GetClaim(self.real_key(key)))
            assert claim is not None and claim.state == "done", (key, claim)
            recorded = None if claim.output is None else __import__("json").loads(claim.output)
            assert recorded == c.output, (key, recorded, c.output)


def _burst_call(
    url: str,
    marks: str,
    name: str,
    v: int,
    now: float,
    barrier: Any,
    out: Any,
    denied: list[tuple[str, int]],
    irreversible_rule: bool,
    kind: str,
) -> None:
    from tests.support.exactly_once_tools import burst_call

    out.put(burst_call(url, marks, name, v, now, barrier, denied, irreversible_rule, kind))


def _crash_call(*args: Any) -> None:
    from tests.support.exactly_once_tools import crash_call

    crash_call(*args)


def run_machine(base_url: str, profile: settings, kind: str = "sync") -> None:
    ExactlyOnce.base_url = base_url
    ExactlyOnce.kind = kind
    try:
        run_state_machine_as_test(ExactlyOnce, settings=profile)
    finally:
        ExactlyOnce.kind = "sync"


def machine_settings() -> settings:
    soak = os.environ.get("HYPOTHESIS_PROFILE") == "soak"
    return settings(
        max_examples=200 if soak else 30,
        stateful_step_count=40 if soak else 20,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


@pytest.mark.parametrize("kind", RUNTIME_KINDS)
def test_exactly_once_on_sqlite(tmp_path: Path, kind: str) -> None:
    run_machine("sqlite:", machine_settings(), kind)


@pytest.mark.parametrize("kind", RUNTIME_KINDS)
def test_exactly_once_on_postgres(pg_base_url: str, kind: str) -> None:
    run_machine(pg_base_url, machine_settings(), kind)


def test_store_error_is_a_store_error() -> None:
    assert issubclass(StoreError, dar.DarError)


# --- what Hypothesis found, kept as explicit regression examples ----------------------------


def fresh_machine(tmp_path: Path) -> ExactlyOnce:
    ExactlyOnce.base_url = "sqlite:"
    machine = ExactlyOnce()
    machine.start()
    return machine


def test_found_a_deny_rule_is_a_rule_for_an_irreversible_tool(tmp_path: Path) -> None:
    """The model first thought only an allow rule counted as 'a rule applies'."""
    m = fresh_machine(tmp_path)
    m.drop_rule("irreversible_allowed")
    m.add_deny_rule(name="t_irr", v=0)
    m.call(worker=0, name="t_irr", v=0, explicit=None, fail=False)  # REJECTED, not an error
    m.call(worker=0, name="t_irr", v=1, explicit=None, fail=False)  # EXECUTED
    m.effects_match_the_model()
    m.teardown()


def test_found_a_running_claim_conflicts_with_another_input(tmp_path: Path) -> None:
    """The model first let a second input take an explicit key still held by a dead worker."""
    m = fresh_machine(tmp_path)
    m.crash(name="t_local", v=0, explicit="shared-key", point="after_claim")
    m.advance_clock(seconds=41)
    m.crash(name="t_local", v=1, explicit="shared-key", point="after_claim")  # not claimable
    m.call(worker=0, name="t_local", v=1, explicit="shared-key", fail=False)  # CONFLICT
    m.effects_match_the_model()
    m.the_log_only_grows()
    m.teardown()


def test_found_burst_workers_need_the_rules_in_force(tmp_path: Path) -> None:
    """Worker processes of a burst were first built without the deny rules in force."""
    m = fresh_machine(tmp_path)
    m.add_deny_rule(name="t_local", v=2)
    m.burst(name="t_local", v=2, n=2, processes=True)  # every worker refuses
    m.burst(name="t_local", v=1, n=3, processes=True)  # exactly one runs
    m.effects_match_the_model()
    m.cached_outputs_equal_the_record()
    m.teardown()


def test_wait_runs_out_as_in_progress(make_runtime: MakeRuntime, clock: Clock) -> None:
    calls = Calls()
    t = make_tool(Effect.MUTATE_EXTERNAL, calls, lease=60)
    rt = make_runtime(clock=clock, wait=0.02)
    # Another worker holds the key, still within its lease.
    abandon_claim(rt, t, {"x": 1})
    # Our call waits for it, then gives up.
    res = rt.execute(t, {"x": 1})
    assert res.status == Status.IN_PROGRESS
    assert calls.total == 0
    assert statuses(rt)[-1] == "in_progress"
