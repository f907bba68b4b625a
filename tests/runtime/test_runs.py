"""Durable runs: an agent's whole loop, killed anywhere and resumed from its journal in
another process, suspended on a person's decision, raced for by two workers, and resumed
by code that changed in between."""

from __future__ import annotations

import json
import multiprocessing as mp
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dar import Runtime
from tests.support import runs as R

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
    shared_url: str, runtime_kind: str, tmp_path: Path, kills: str
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
        assert logs[session] == expected_log(logs["orig"], point), point
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
    print(f"\n{kills} ({runtime_kind}, {shared_url.split(':')[0]}):", *figures, sep="\n")
