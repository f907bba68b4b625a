"""Durable runs: an agent's whole loop, killed anywhere and resumed from its journal in
another process, suspended on a person's decision, raced for by two workers, and resumed
by code that changed in between."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing as mp
import signal
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import dar
from dar import ConfigurationError, RunResult, Runtime
from dar.core.ops import SaveRun
from dar.errors import ModeError
from tests.conftest import Clock
from tests.support import runs as R
from tests.support.calls import MakeRuntime, wait_until
from tests.support.cli import cli, dar_cmd
from tests.support.runtimes import make as make_kind

CTX = mp.get_context("forkserver")
CTX.set_forkserver_preload(["tests.support.runs"])

#: Where a worker dies: the boundary before every step (``start`` before the first,
#: ``step:K`` after step K: the last one is the boundary before the run's end).
BOUNDARIES = ["start", *(f"step:{k}" for k in range(R.REFUND_STEPS))]
#: In the middle of a step: a model request the server answered and the agent never
#: read, a tool handler after its effect, and a step done whose journal row is not written.
MIDDLES = [
    *(f"model:{j}" for j in range(len(R.REFUND))),
    "handler:refund",
    "handler:send_email",
    *(f"unjournaled:{k}" for k in range(R.REFUND_STEPS)),
]


def spawn(target: Any, *args: Any, **kwargs: Any) -> int | None:
    proc = CTX.Process(target=target, args=args, kwargs=kwargs)
    proc.start()
    proc.join(120)
    return proc.exitcode


def results(path: Path) -> dict[str, dict[str, Any]]:
    return {r["session_id"]: r for r in json.loads(path.read_text())}


def model_turn(step: int) -> int | None:
    """The model turn a step of `R.REFUND` is (step 0 is the ticket; then model turns and
    tool calls alternate)."""
    return (step - 1) // 2 if step % 2 == 1 else None


def resent(point: str) -> int | None:
    """The model request a worker killed at ``point`` had in flight: sent again."""
    kind, _, n = point.partition(":")
    if kind == "model":
        return int(n)
    return model_turn(int(n)) if kind == "unjournaled" else None


def expected_log(reference: list[R.Shape], point: str) -> list[R.Shape]:
    """The session's log after a kill at ``point`` and a resume: the uninterrupted run's,
    plus what the one call in flight left. A boundary, or a model request (no row of its
    own), leaves nothing. A handler killed after its effect leaves its ``started`` row;
    the resume takes the call over (attempt 2) and reconcile finds the effect. A tool
    call whose journal row was not written is asked again: a read reads again, a refusal
    is refused again, an effect answers ``cached``."""
    kind, _, arg = point.partition(":")
    out = list(reference)
    if kind == "handler":
        first = next(i for i, s in enumerate(out) if (s.status, s.tool) == ("started", arg))
        again = [replace(s, attempt=2) for s in out[first : first + 2]]
        return [*out[:first], out[first], *again, *out[first + 2 :]]
    if kind == "unjournaled" and int(arg) > 0 and model_turn(int(arg)) is None:
        journaled = next(
            i for i, s in enumerate(out) if s.status == "run_step" and s.attempt == int(arg)
        )
        outcome = out[journaled - 1]
        if outcome.status == "executed" and outcome.effect != "read":
            outcome = replace(outcome, status="cached", attempt=None)
        return [*out[:journaled], outcome, *out[journaled:]]
    return out


@pytest.mark.parametrize("kills", ["boundaries", "middles"])
def test_a_run_killed_anywhere_resumes_in_another_process_as_if_it_never_died(
    shared_url: str,
    runtime_kind: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kills: str,
) -> None:
    """The refund conversation (6 model turns through the OpenAI client, 2 reads, 2
    effects, a refusal, a `dar.step`) killed with SIGKILL at every point of ``kills``,
    one session each, then resumed by one worker in another process: every session ends
    as the uninterrupted one did."""
    marks = tmp_path / "marks"
    marks.mkdir()
    points = BOUNDARIES if kills == "boundaries" else MIDDLES
    sessions = {p: f"k{i:02}" for i, p in enumerate(points)}
    with R.ConversationServer(R.REFUND) as model:
        code = spawn(
            R.run_worker, shared_url, runtime_kind, str(marks), model.url, "orig",
            str(tmp_path / "orig.json"),
        )  # fmt: skip
        assert code == 0
        for point, session in sessions.items():
            code = spawn(
                R.crash_worker, shared_url, runtime_kind, str(marks), model.url, session, point
            )
            assert code == -signal.SIGKILL, f"{point}: exit code {code}"
        with Runtime(shared_url) as rt:
            before = {r.session_id: r for r in rt.runs()}
        code = spawn(
            R.resume_worker, shared_url, runtime_kind, str(marks), str(tmp_path / "out.json"),
            ahead=3600,
        )  # fmt: skip
        assert code == 0
        done = results(tmp_path / "out.json")
        with Runtime(shared_url) as rt:
            after = {r.session_id: r for r in rt.runs()}
            logs = {s: R.shape(rt.events(correlation_id=s)) for s in ["orig", *sessions.values()]}
    assert set(done) == set(sessions.values())  # every killed run, and only those
    orig = after["orig"]
    reference = R.same_conversation(model.of("orig"), "orig")
    assert len(reference) == len(R.REFUND) and orig.steps == R.REFUND_STEPS
    figures = [f"{'killed at':<18} requests effects  plain re-run  resumed spent  saved"]
    for point, session in sessions.items():
        answer = f"Refunded 50 on ORD-{session} and told the customer."
        assert done[session] == {
            "session_id": session, "status": "finished", "output": answer, "error": None,
            "approval_id": None,
        }, point  # fmt: skip
        # The model: every request once, the one in flight at the kill twice.
        sent = R.same_conversation(model.of(session), session)
        again = resent(point)
        expected = reference if again is None else [*reference[: again + 1], *reference[again:]]
        assert sent == expected, point
        tickets = set(R.TICKET.findall(json.dumps(model.of(session))))
        assert len(tickets) == 1, point  # the dar.step value, journaled before the kill
        # The effects: once each; the refused refund never; reads once, or twice when
        # the read itself was in flight.
        order = f"ORD-{session}"
        effects = {
            **R.marks_of(marks, f"effect.refund.{order}."),
            **R.marks_of(marks, f"effect.send_email.{order}"),
        }
        assert effects == {f"effect.refund.{order}.50": 1, f"effect.send_email.{order}": 1}
        reads = {n: R.count(marks, f"read.{n}.{order}") for n in ("lookup_order", "refund_status")}
        twice = {"unjournaled:2": "lookup_order", "unjournaled:8": "refund_status"}.get(point)
        assert reads == {n: 2 if n == twice else 1 for n in reads}, point
        # The log: the uninterrupted run's, plus what the call in flight left.
        # A resume says so in a row of its own (which worker took the run over).
        resumed = [s for s in logs[session] if s.status != "run_started"]
        started = [s for s in logs["orig"] if s.status != "run_started"]
        assert resumed == expected_log(started, point), point
        assert 1 <= len(logs[session]) - len(resumed) <= 2, point  # (started,) resumed once
        # Tokens: the resumed run spent what the journal could not answer.
        run = after[session]
        spent = run.tokens - before[session].tokens
        assert (run.state, run.steps, json.loads(run.output or "null")) == (
            "finished", R.REFUND_STEPS, answer,
        ), point  # fmt: skip
        assert spent + run.tokens_saved == orig.tokens, point
        figures.append(
            f"{point:<18} {len(sent):>8} {sum(effects.values()):>7} {orig.tokens:>13} "
            f"{spent:>14} {run.tokens_saved:>6}"
        )
    with capsys.disabled():  # the figures, for whoever runs it (-s or not)
        print(f"\n{kills} ({runtime_kind}, {shared_url.split(':')[0]}):", *figures, sep="\n")
    with Runtime(shared_url) as rt:
        assert rt.resume() == []  # nothing left to resume
    code, said = cli(["verify", "--db", shared_url], capsys)
    assert code == 0 and "OK" in said, said


# --- a person's decision ----------------------------------------------------------------------

REASON = "no refunds over 100 this week: offer a voucher"


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_a_run_waits_for_a_person_deciding_from_the_cli_then_a_worker_goes_on(
    shared_url: str,
    runtime_kind: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    decision: str,
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setattr(R, "MARKS", marks)
    monkeypatch.setattr(R, "RUNTIME", None)
    refunded = "effect.refund.ORD-a1.300"
    with R.ConversationServer(R.APPROVAL) as model:
        with R.build(shared_url, runtime_kind) as rt:
            first = rt.start(R.agent_for(runtime_kind), "a1", model.url, "a1")
            assert first.status == "suspended" and first.approval_id is not None
            assert [(r.state, r.approval_id) for r in rt.runs()] == [
                ("suspended", first.approval_id)
            ]
            assert rt.resume() == []  # nobody has decided yet
            assert R.count(marks, refunded) == 0
        if decision == "approve":
            command = ["approve", first.approval_id, "--by", "alice"]
        else:
            command = ["deny", first.approval_id, "--by", "bob", "--reason", REASON]
        decided = dar_cmd(*command, "--db", shared_url)
        assert decided.returncode == 0, decided.stderr
        out = tmp_path / "out.json"
        assert spawn(R.resume_worker, shared_url, runtime_kind, str(marks), str(out)) == 0
        assert results(out) == {
            "a1": {"session_id": "a1", "status": "finished", "output": "Done with ORD-a1.",
                   "error": None, "approval_id": None}
        }  # fmt: skip
        # The model was asked its first turn once (the resume read it from the journal),
        # then read what became of the call.
        bodies = model.of("a1")
        assert len(bodies) == 2
        said = bodies[1]["messages"][-1]
        assert said["role"] == "tool"
        if decision == "approve":
            assert R.count(marks, refunded) == 1
            assert json.loads(said["content"]) == {"refunded": 300, "order_id": "ORD-a1"}
        else:
            assert R.count(marks, refunded) == 0
            assert REASON in said["content"]
        with R.build(shared_url, runtime_kind) as rt:
            assert rt.resume() == []
            again = rt.start(R.agent_for(runtime_kind), "a1", model.url, "a1")
            assert (again.status, again.output) == ("finished", "Done with ORD-a1.")
            statuses = [e.status for e in rt.events(correlation_id="a1")]
        assert len(model.requests) == 2
    assert R.count(marks, refunded) == (1 if decision == "approve" else 0)
    decided_row = "approved" if decision == "approve" else "denied"
    assert statuses.count("run_suspended") == 1 and decided_row in statuses
    assert statuses[-1] == "run_ended"
    code, text = cli(["verify", "--db", shared_url], capsys)
    assert code == 0, text


# --- two workers --------------------------------------------------------------------------------


def test_two_workers_racing_to_resume_one_run_only_one_runs_it(
    shared_url: str, runtime_kind: str, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    with R.ConversationServer(R.REFUND) as model:
        code = spawn(
            R.crash_worker, shared_url, runtime_kind, str(marks), model.url, "r1", "step:5"
        )
        assert code == -signal.SIGKILL
        barrier = CTX.Barrier(2)
        outs = [tmp_path / "a.json", tmp_path / "b.json"]
        procs = [
            CTX.Process(
                target=R.resume_worker,
                args=(shared_url, runtime_kind, str(marks), str(out)),
                kwargs={"ahead": 3600, "barrier": barrier},
            )
            for out in outs
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0, 0]
        got = sorted((results(out) for out in outs), key=len)
        assert got[0] == {}  # the other worker found nothing to resume
        assert got[1]["r1"]["status"] == "finished"
        assert len(model.of("r1")) == len(R.REFUND)  # no turn asked twice
    assert R.count(marks, "effect.refund.ORD-r1.50") == 1
    assert R.count(marks, "effect.send_email.ORD-r1") == 1


def test_starting_a_run_another_worker_holds_answers_running(
    make_runtime: MakeRuntime, runtime_kind: str
) -> None:
    gate = f"gate-{uuid.uuid4().hex}"
    R.GATES[gate] = threading.Event()
    agent = R.small("gated", runtime_kind)
    first, second = make_runtime(), make_runtime()
    holder: list[RunResult] = []
    worker = threading.Thread(target=lambda: holder.append(first.start(agent, "g1", gate)))
    worker.start()
    try:
        wait_until(lambda: R.CALLED[gate] == 1)
        assert second.start(agent, "g1", gate) == RunResult("g1", "running")
        assert second.resume() == []  # its lease is live
    finally:
        R.GATES[gate].set()
        worker.join(30)
    assert holder == [RunResult("g1", "finished", "through")]
    assert second.start(agent, "g1", gate) == RunResult("g1", "finished", "through")
    assert R.CALLED[gate] == 1


def test_a_step_recorded_after_one_that_never_was_runs_again_on_resume(
    shared_url: str, tmp_path: Path
) -> None:
    """An async run records a turn's calls as they end: the quick read (step 3) before the
    slow one (step 2). Killed in between, its journal has a gap: the resume asks again
    from the gap on (reads: no effect to repeat). Killed again later, the next resume
    answers step 3 with what the second worker read (the turns after it were built on
    that), not with the first worker's stale record, and finishes."""
    marks = tmp_path / "marks"
    marks.mkdir()
    out = tmp_path / "out.json"
    with R.ConversationServer(R.GAP) as model:
        crash = (shared_url, "async", str(marks), model.url, "h1", "step:3")
        assert spawn(R.crash_worker, *crash) == -signal.SIGKILL
        with Runtime(shared_url) as rt:
            recorded = [e.attempt for e in rt.events(correlation_id="h1", status="run_step")]
        assert recorded == [0, 1, 3]
        resume = (shared_url, "async", str(marks), str(out))
        assert spawn(R.resume_worker, *resume, ahead=3600, kill="step:5") == -signal.SIGKILL
        assert spawn(R.resume_worker, *resume, ahead=7200) == 0
        assert results(out)["h1"]["status"] == "finished", results(out)
        assert len(model.of("h1")) == 3  # each turn once
    assert R.count(marks, "read.slow_read.ORD-h1") == 2
    assert R.count(marks, "read.quick_read.ORD-h1") == 2
    assert R.count(marks, "read.lookup_order.ORD-h1") == 1


def test_a_worker_that_outlived_its_lease_hands_the_run_over_without_raising(
    make_runtime: MakeRuntime, runtime_kind: str, clock: Clock
) -> None:
    """Worker A is slow after its last step; worker B, its clock past A's lease, takes
    the run over. Both return: B with the run's end, A with ``running`` (its ending was
    refused, the run is B's), not with an exception out of `start`."""
    gate = f"gate-{uuid.uuid4().hex}"
    R.GATES[gate] = threading.Event()
    agent = R.small("late", runtime_kind)
    a = make_runtime(clock=clock)
    b = make_runtime(clock=lambda: clock.now + 120)
    got: dict[str, Any] = {}

    def worker(name: str, fn: Callable[[], Any]) -> None:
        try:
            got[name] = fn()
        except BaseException as exc:  # what must not happen: RunLost out of start
            got[name] = exc

    threads = [
        threading.Thread(target=worker, args=("a", lambda: a.start(agent, "l1", gate))),
    ]
    threads[0].start()
    try:
        wait_until(lambda: len(a.events(status="run_step")) == 1)  # A is past its last step
        threads.append(threading.Thread(target=worker, args=("b", b.resume)))
        threads[1].start()
        wait_until(lambda: R.CALLED[gate] == 2)  # B replayed the step and waits too
    finally:
        R.GATES[gate].set()
        for t in threads:
            t.join(30)
    assert got == {"a": RunResult("l1", "running"), "b": [RunResult("l1", "finished", "late")]}
    (run,) = a.runs()
    assert (run.state, run.owner, run.tokens_saved) == ("finished", None, 0)


def test_what_a_tool_does_inside_its_call_is_not_a_step_of_the_run(
    make_runtime: MakeRuntime, runtime_kind: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler's `dar.step` belongs to its tool call, the run's step: a resume answers
    the call from the journal without running the handler, so the handler's step must
    not have taken a number of the run (the resume diverged at the next step)."""
    gate = f"gate-{uuid.uuid4().hex}"
    R.GATES[gate] = threading.Event()
    monkeypatch.setattr(R, "RUNTIME", None)
    agent = R.small("nested", runtime_kind)
    a = make_runtime(clock=clock, tools=[R.stamped])
    b = make_runtime(clock=lambda: clock.now + 120, tools=[R.stamped])
    R.install(a)
    got: dict[str, Any] = {}
    first = threading.Thread(target=lambda: got.update(a=a.start(agent, "n1", gate)))
    second = threading.Thread(target=lambda: got.update(b=b.resume()))
    first.start()
    try:
        wait_until(lambda: len(a.events(status="run_step")) == 2)  # A is at its gate
        steps = [(e.attempt, e.tool_name) for e in a.events(status="run_step")]
        assert sorted(steps) == [(0, "stamped"), (1, "after")]
        (step,) = a.events(tool="stamped", status="run_step")
        answer = json.loads(step.output) if isinstance(step.output, str) else step.output
        said = answer["response"]
        assert said["status"] == "executed", said  # the handler's value, not a coroutine
        assert isinstance(json.loads(said["output_json"])["at"], float)
        R.install(b)
        second.start()
        wait_until(lambda: R.CALLED[gate] == 2)  # B answered both steps from the journal
    finally:
        R.GATES[gate].set()
        first.join(30)
        if second.ident is not None:
            second.join(30)
    assert got == {"a": RunResult("n1", "running"), "b": [RunResult("n1", "finished", "nested")]}


def test_a_blocking_runtime_leaves_the_runs_of_async_agents_to_an_async_one(
    store_url: str, clock: Clock
) -> None:
    """`resume()` on a `Runtime` cannot run a coroutine agent: it leaves its run alone
    (it used to take it over and fail it for good) for an `AsyncRuntime` to resume."""
    gate = f"gate-{uuid.uuid4().hex}"
    R.GATES[gate] = threading.Event()
    art = make_kind("async", store_url, clock=clock)
    blocking = Runtime(art.store, clock=lambda: clock.now + 120)  # past the async run's lease
    worker = threading.Thread(target=art.start, args=(R.agated, "x1", gate))
    worker.start()
    try:
        wait_until(lambda: R.CALLED[gate] == 1)
        assert blocking.resume() == []
        (run,) = blocking.runs()
        assert (run.state, run.error) == ("running", None)
    finally:
        R.GATES[gate].set()
        worker.join(30)
    try:
        (run,) = blocking.runs()
        assert (run.state, run.output) == ("finished", '"through"')
    finally:
        art.close()  # and the store the two share


# --- code that changed --------------------------------------------------------------------------


def test_code_that_asks_something_else_after_a_crash_fails_the_run_and_runs_nothing_new(
    shared_url: str, runtime_kind: str, tmp_path: Path
) -> None:
    """The new code e-mails the customer before asking the model anything: step 1 was a
    model turn in the journal. The run fails naming ReplayDivergence; the e-mail is not
    sent and the model is not asked."""
    marks = tmp_path / "marks"
    marks.mkdir()
    with R.ConversationServer(R.REFUND) as model:
        code = spawn(
            R.crash_worker, shared_url, runtime_kind, str(marks), model.url, "d1", "step:2"
        )
        assert code == -signal.SIGKILL
        out = tmp_path / "out.json"
        code = spawn(
            R.resume_worker, shared_url, runtime_kind, str(marks), str(out), ahead=3600,
            variant="notify-first",
        )  # fmt: skip
        assert code == 0
        assert len(model.of("d1")) == 1
    res = results(out)["d1"]
    assert res["status"] == "failed"
    assert res["error"].startswith("ReplayDivergence: replay diverged at step 1")
    assert "model openai.chat" in res["error"] and "tool send_email" in res["error"]
    assert R.count(marks, "effect.send_email.ORD-d1") == 0
    with Runtime(shared_url) as rt:
        assert [e.tool_name for e in rt.events(correlation_id="d1", tool="send_email")] == []
        (run,) = rt.runs()
        assert (run.state, run.error) == ("failed", res["error"])
        assert rt.resume() == []  # a failed run stays failed


# --- edge cases ---------------------------------------------------------------------------------


def test_an_agent_not_declared_with_dar_agent_is_a_configuration_error(
    make_runtime: MakeRuntime,
) -> None:
    rt = make_runtime()
    with pytest.raises(ConfigurationError, match=r"declare it with @dar.agent"):
        rt.start(R.undeclared, "u1", "x")
    assert rt.runs() == [] and rt.events() == []


def test_starting_a_finished_run_answers_its_recorded_result_without_running_it(
    make_runtime: MakeRuntime, runtime_kind: str
) -> None:
    rt = make_runtime()
    name = f"ada-{uuid.uuid4().hex}"
    agent = R.small("greet", runtime_kind)
    done = rt.start(agent, "f1", name)
    assert done == RunResult("f1", "finished", f"hello {name}")
    rows = len(rt.events())
    assert rt.start(agent, "f1", name) == done
    assert R.CALLED[name] == 1 and len(rt.events()) == rows
    (run,) = rt.runs(state="finished")
    assert (run.steps, run.tokens, run.tokens_saved) == (1, 0, 0)


def test_starting_a_run_again_with_other_arguments_is_refused_and_leaves_it_alone(
    make_runtime: MakeRuntime, runtime_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session is one run: asked again with other arguments (a retry that lost track
    of its session ids), it is a configuration error, finished or waiting for a person,
    and the run is as it was (a waiting one is not replayed into a divergence)."""
    monkeypatch.setattr(R, "RUNTIME", None)
    rt = make_runtime(tools=R.TOOLS, rules=[R.refund_limit])
    R.install(rt)
    agent = R.agent_for(runtime_kind)
    with R.ConversationServer(R.APPROVAL) as model:
        waiting = rt.start(agent, "w1", model.url, "w1")
        assert waiting.status == "suspended"
        with pytest.raises(ConfigurationError, match=r"session 'w1' is a run of .* with"):
            rt.start(agent, "w1", model.url, "w2")
        (run,) = rt.runs()
        assert (run.state, run.approval_id, run.error) == ("suspended", waiting.approval_id, None)
        assert len(model.requests) == 1
    greet = R.small("greet", runtime_kind)
    rt.start(greet, "f1", "ada")
    with pytest.raises(ConfigurationError, match=r'with \["ada"\], not \["bob"\]'):
        rt.start(greet, "f1", "bob")


def test_starting_a_run_that_waits_for_a_person_answers_suspended_without_replaying_it(
    make_runtime: MakeRuntime, runtime_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(R, "RUNTIME", None)
    rt = make_runtime(tools=R.TOOLS, rules=[R.refund_limit])
    R.install(rt)
    agent = R.agent_for(runtime_kind)
    with R.ConversationServer(R.APPROVAL) as model:
        waiting = rt.start(agent, "w1", model.url, "w1")
        rows = len(rt.events())
        assert rt.start(agent, "w1", model.url, "w1") == waiting
        assert len(rt.events()) == rows and len(rt.approvals(status="pending")) == 1
        (run,) = rt.runs()
        assert (run.state, run.tokens, run.tokens_saved) == ("suspended", 2, 0)
        rt.deny(waiting.approval_id or "", by="bob", reason="no")
        done = rt.start(agent, "w1", model.url, "w1")  # decided: this start goes on
        assert (done.status, done.output) == ("finished", "Done with ORD-w1.")
        assert len(model.requests) == 2
        (run,) = rt.runs()
        assert (run.tokens, run.tokens_saved) == (4, 2)


def test_a_step_value_with_no_json_form_is_a_type_error_the_agent_sees(
    make_runtime: MakeRuntime, runtime_kind: str
) -> None:
    rt = make_runtime()
    agent = R.small("opaque", runtime_kind)
    caught = rt.start(agent, "o1", True)
    assert caught.status == "finished"
    assert caught.output.startswith("refused: dar.step('opaque'): the value has no JSON form")
    failed = rt.start(agent, "o2", False)
    assert failed.status == "failed" and (failed.error or "").startswith("TypeError: dar.step")
    assert [r.state for r in rt.runs()] == ["finished", "failed"]
    assert rt.events(status="run_step") == []  # nothing was journaled


def test_an_agent_returning_a_value_with_no_json_form_fails_its_run(
    make_runtime: MakeRuntime, runtime_kind: str
) -> None:
    rt = make_runtime()
    res = rt.start(R.small("returns_opaque", runtime_kind), "j1")
    assert res.status == "failed"
    assert (res.error or "").startswith("TypeError: the agent returned a value with no JSON form")
    (run,) = rt.runs()
    assert (run.state, run.owner, run.lease_until) == ("failed", None, None)
    assert rt.resume() == []


def test_a_personal_field_of_a_tool_call_in_a_run_reaches_no_table(
    make_runtime: MakeRuntime, runtime_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tool's ``redact=`` fields are kept out of the journal too: the step's row holds
    their salted hash; the request it compares still covers the whole input."""
    rt = make_runtime(tools=[R.charge])
    monkeypatch.setattr(R, "RUNTIME", None)
    R.install(rt)
    agent = R.small("pays", runtime_kind)
    assert rt.start(agent, "c1", 5) == RunResult("c1", "finished", "executed")
    (step,) = rt.events(status="run_step")
    assert R.CARD not in json.dumps(step.input) and "redacted:" in json.dumps(step.input)
    assert all(R.CARD not in json.dumps(dataclasses.asdict(e), default=str) for e in rt.events())
    # The journal still tells a changed input: the same run asked with another card fails.
    monkeypatch.setattr(R, "CARD", "5500-0000-0000-0004")
    record = rt.runs()[0]
    again = dataclasses.replace(
        record, state="running", lease_until=0.0, version=record.version + 1
    )
    assert rt.store.save_run(SaveRun(again, record.version))
    (res,) = rt.resume()
    assert res.status == "failed" and "ReplayDivergence" in (res.error or "")
    assert "5500" not in (res.error or "") and R.CARD not in (res.error or "")


def test_tool_calls_a_model_turn_makes_together_are_steps_of_their_own(
    make_runtime: MakeRuntime, runtime_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The async integration runs a turn's calls concurrently: each is a step, numbered in
    the order the model asked for them, and the run goes on (it once lost itself: both
    calls moved the run from the same version)."""
    monkeypatch.setattr(R, "MARKS", tmp_path)
    monkeypatch.setattr(R, "RUNTIME", None)
    rt = make_runtime(tools=R.TOOLS, rules=[R.refund_limit])
    R.install(rt)
    with R.ConversationServer(R.PARALLEL) as model:
        res = rt.start(R.agent_for(runtime_kind), "p1", model.url, "p1")
        assert (res.status, res.output) == ("finished", "Looked twice at ORD-p1.")
        # Numbered in the order the model asked; recorded in the order they ended.
        steps = sorted((e.attempt, e.effect, e.tool_name) for e in rt.events(status="run_step"))
        assert steps == [
            (0, "step", "ticket"),
            (1, "model", "openai.chat"),
            (2, "tool", "lookup_order"),
            (3, "tool", "refund_status"),
            (4, "model", "openai.chat"),
        ]
        assert len(model.requests) == 2


def test_a_step_that_raises_gives_its_number_back(store_url: str, clock: Clock) -> None:
    # A failed model call once kept its number: the retry took the next one, the journal
    # had a gap, and a resume could not walk it.
    tries: list[int] = []

    def flaky() -> int:
        tries.append(len(tries))
        if len(tries) == 1:
            raise TimeoutError("the model took too long")
        return 42

    @dar.agent
    def retrying() -> int:
        with contextlib.suppress(TimeoutError):
            dar.step("answer", flaky)
        value: int = dar.step("answer", flaky)
        after: int = dar.step("after", lambda: 7)
        return value + after

    rt = Runtime(store_url, clock=clock)
    assert rt.start(retrying, f"retry-{uuid.uuid4().hex[:8]}").output == 49
    steps = sorted((e.attempt, e.tool_name) for e in rt.events(status="run_step"))
    assert steps == [(0, "answer"), (1, "after")]
    rt.close()


@pytest.mark.parametrize("mode", [{"dry_run": True}, {"replay": "some-session"}])
def test_a_replay_or_a_dry_run_starts_and_resumes_no_run(
    store_url: str, mode: dict[str, Any]
) -> None:
    @dar.agent
    def nothing() -> int:
        return 1

    live = Runtime(store_url)
    live.call("nothing_registered", {}, correlation_id="some-session")  # a session to replay
    rt = Runtime(store_url, **mode)
    with pytest.raises(ModeError, match="starts no durable run"):
        rt.start(nothing, f"mode-{uuid.uuid4().hex[:8]}")
    assert rt.resume() == []
    assert live.runs() == []
    live.close()
