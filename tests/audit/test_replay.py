"""Replay: a session replayed from the record runs nothing and gives what the live calls gave
(crashed and refused calls included); the first divergence is reported."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dar import (
    AsyncRuntime,
    Deny,
    Effect,
    ReplayDivergence,
    Runtime,
    Status,
    rule,
    tool,
)
from dar.cli.main import main
from dar.errors import ModeError
from tests.support.calls import MakeRuntime, allow_all, wait_until
from tests.support.sessions import covered, record_session, send_message
from tests.support.trip import trip_agent, trip_tools


def crash_in_handler(url: str, folder: str, corr: str) -> None:
    """(Spawned) start an irreversible call whose handler hangs until SIGKILLed."""

    @tool(name="wire19", effect=Effect.IRREVERSIBLE, key=lambda i: f"wire19:{i['n']}", lease=1)
    def wire(n: int) -> str:
        (Path(folder) / "started").write_text("1")
        time.sleep(3600)
        return "sent"

    Runtime(url, rules=[allow_all]).execute(wire, {"n": 1}, correlation_id=corr)


def _crash(url: str, tmp_path: Any, corr: str) -> None:
    import multiprocessing as mp
    import os
    import signal

    proc = mp.get_context("spawn").Process(target=crash_in_handler, args=(url, str(tmp_path), corr))
    proc.start()
    try:
        wait_until(lambda: (tmp_path / "started").exists(), 60)
    finally:
        assert proc.pid is not None  # started
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)


def test_a_crashed_call_replays_as_indeterminate(shared_url: str, tmp_path: Any) -> None:
    """Found by the airtight review: replay: a crashed call (only a `started` row) replays as
    `executed` with output `None` (should be `indeterminate`)."""
    _crash(shared_url, tmp_path, "s19a")
    forbidden = tool(name="wire19", effect=Effect.IRREVERSIBLE)(lambda **k: 1 / 0)
    with Runtime(shared_url, replay="s19a") as replayer:
        res = replayer.execute(forbidden, {"n": 1})
    assert res.status == Status.INDETERMINATE


def test_a_reconciled_then_refused_call_is_rejected_in_trace_and_replay(
    shared_url: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by the airtight review: a crashed call whose `reconcile` says "not executed" and which
    a rule then refuses is `rejected` live, but ends in an undocumented `released` row."""

    from dar import Reconciled

    _crash(shared_url, tmp_path, "s19b")
    time.sleep(1.2)  # the lease (1 s) runs out

    @tool(
        name="wire19",
        effect=Effect.IRREVERSIBLE,
        key=lambda i: f"wire19:{i['n']}",
        lease=1,
        reconcile=lambda inp: Reconciled(executed=False),
    )
    def wire(n: int) -> str:
        raise AssertionError("refused calls do not run")

    closed = rule(applies_to="wire19", name="bank_closed")(lambda i, c: Deny("bank closed"))
    with Runtime(shared_url, rules=[closed]) as rt:
        live = rt.execute(wire, {"n": 1}, correlation_id="s19b")
    assert (live.status, live.rule) == (Status.REJECTED, "bank_closed")
    assert main(["trace", "s19b", "--db", shared_url, "--json"]) == 0
    tree = json.loads(capsys.readouterr().out)
    assert tree[-1]["status"] == "rejected", f"trace shows {tree[-1]['status']}"
    with Runtime(shared_url, replay="s19b") as replayer:
        replayed = [replayer.execute(wire, {"n": 1}) for _ in range(2)]
    assert [r.status for r in replayed] == [Status.INDETERMINATE, Status.REJECTED]


def test_replay_serves_the_record_and_runs_nothing(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(rules=[covered])
    recorded = record_session(rt)
    before = len(rt.events())
    replayer = make_runtime(replay="s-1", store=rt.store)

    def forbidden(**kwargs: Any) -> Any:
        raise AssertionError("a handler ran during replay")

    dispatch = tool(name="dispatch", effect=Effect.IRREVERSIBLE)(forbidden)
    send = tool(name="send_message", effect=Effect.MUTATE_EXTERNAL)(forbidden)
    fl = tool(name="flaky", effect=Effect.MUTATE_LOCAL)(forbidden)
    replayed = [
        replayer.execute(dispatch, {"order": "A", "town": "Yunguyo"}),
        replayer.execute(dispatch, {"order": "B", "town": "Juliaca"}),
        replayer.execute(send, {"order": "B", "text": "on its way"}),
        replayer.execute(send, {"order": "B", "text": "on its way"}),
        replayer.execute(fl, {"n": 1}),
    ]
    assert [(r.status, r.output, r.reason, r.error) for r in replayed] == [
        (r.status, r.output, r.reason, r.error) for r in recorded
    ]
    assert len(rt.events()) == before  # nothing written
    assert replayer._replayer is not None and replayer._replayer.finished


def test_replay_reports_the_first_divergence(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(rules=[covered])
    record_session(rt)
    dispatch = tool(name="dispatch", effect=Effect.IRREVERSIBLE)(lambda **k: None)
    send = tool(name="send_message", effect=Effect.MUTATE_EXTERNAL)(lambda **k: None)
    other_input = make_runtime(replay="s-1", store=rt.store)
    other_input.execute(dispatch, {"order": "A", "town": "Yunguyo"})
    with pytest.raises(ReplayDivergence, match="call #2 to dispatch has input hash"):
        other_input.execute(dispatch, {"order": "B", "town": "Cusco"})
    other_tool = make_runtime(replay="s-1", store=rt.store)
    with pytest.raises(ReplayDivergence, match="call #1 is send_message, the record has dispatch"):
        other_tool.execute(send, {"order": "B", "text": "x"})
    assert other_tool._replayer is not None and other_tool._replayer.divergence is not None


def test_async_replay(store_url: str) -> None:
    async def main_() -> list[Any]:
        async with AsyncRuntime(store_url) as rt:
            live = [
                await rt.execute(send_message, {"order": str(i), "text": "t"}, correlation_id="a-1")
                for i in range(2)
            ]
            rt2 = AsyncRuntime(rt.store, replay="a-1")
            again = [
                await rt2.execute(send_message, {"order": str(i), "text": "t"}) for i in range(2)
            ]
            with pytest.raises(ReplayDivergence, match="the record has only 2 calls"):
                await rt2.execute(send_message, {"order": "9", "text": "t"})
            return [live, again]

    live, again = asyncio.run(main_())
    assert [r.output for r in live] == [r.output for r in again]


# --- plans, commits and sagas in a replay ----------------------------------------------------


def test_a_replay_serves_plans_commits_and_sagas_from_the_record(
    make_runtime: Callable[..., Runtime],
) -> None:
    # A replay once ran the real handler of a committed plan and could not replay a saga.
    runs: list[tuple[str, str]] = []
    live = make_runtime(tools=trip_tools(runs))
    answered = trip_agent(live)
    assert answered == ["execute", "executed", "executed", "completed", "executed"]
    rows = len(live.events())
    runs.clear()
    replay = make_runtime(tools=trip_tools(runs), replay="trip")
    assert trip_agent(replay) == answered
    assert runs == []
    assert len(live.events()) == rows


def test_a_replay_refuses_what_would_write_whichever_method_is_called(
    make_runtime: Callable[..., Runtime],
) -> None:
    runs: list[tuple[str, str]] = []
    live = make_runtime(tools=trip_tools(runs))
    trip_agent(live)
    rows = len(live.events())
    replay = make_runtime(tools=trip_tools(runs), replay="trip")
    with pytest.raises(ModeError, match="replay"):
        replay.call("no_such_tool", {}, correlation_id="trip")  # would log a refusal
    assert replay.recover_sagas() == []
    assert len(live.events()) == rows
