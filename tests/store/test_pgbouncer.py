"""`dar` through PgBouncer in transaction pooling mode, where a server connection is lent
for one transaction at a time: with ``pool_mode=transaction`` it prepares no statements and
listens for nothing, so fresh and cached calls, concurrent duplicates (which poll instead of
being notified), approvals, durable runs and the migration's advisory lock all work, over
fewer server connections than clients."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import dar
from dar import Effect, Runtime, Status, StoreError, tool
from tests.conftest import fresh_schema
from tests.support.hosts import verify_log
from tests.support.pgbouncer import Bouncer

ran: Counter[str] = Counter()


@tool(effect=Effect.MUTATE_EXTERNAL)
def ship(order: str) -> dict[str, Any]:
    ran[order] += 1
    return {"shipped": order}


@tool(effect=Effect.MUTATE_EXTERNAL)
def slow_ship(order: str) -> dict[str, Any]:
    ran[order] += 1
    threading.Event().wait(0.3)
    return {"shipped": order}


@tool(effect=Effect.MUTATE_EXTERNAL, approval=True)
def refund(order: str, amount: int) -> dict[str, Any]:
    ran[f"refund:{order}"] += 1
    return {"refunded": amount}


@pytest.fixture(scope="module")
def bouncer(pg_base_url: str) -> Iterator[Bouncer]:
    """Two server connections for every client of the module."""
    b = Bouncer(pg_base_url, pool_size=2)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def pooled_url(bouncer: Bouncer) -> str:
    ran.clear()
    return f"{bouncer.url}?schema={fresh_schema()}&pool_mode=transaction"


def test_fresh_and_cached_calls_from_two_runtimes_share_two_server_connections(
    pooled_url: str,
) -> None:
    a, b = Runtime(pooled_url), Runtime(pooled_url)
    try:
        # Every statement runs well past psycopg's prepare threshold (5) on both runtimes.
        for n in range(8):
            assert a.execute(ship, {"order": f"O-{n}"}).status == Status.EXECUTED
            assert b.execute(ship, {"order": f"O-{n}"}).status == Status.CACHED
            assert a.execute(ship, {"order": f"O-{n}"}).status == Status.CACHED
        assert set(ran.values()) == {1} and len(ran) == 8
        b.close()  # its buffered hit rows written, so that the log stands still to verify
        report = verify_log(a)
        assert report.ok, report.broken
    finally:
        a.close()
        b.close()


def test_a_session_store_through_a_transaction_pooler_fails_on_prepared_statements(
    pg_base_url: str,
) -> None:
    """Why the option exists: psycopg prepares a statement it has run 5 times, under a name
    of its connection's, on whichever server connection it was lent; over one server
    connection, the second client to prepare finds the first one's name taken."""
    one = Bouncer(pg_base_url, pool_size=1)
    url = f"{one.url}?schema={fresh_schema()}&retry_for=0"
    a, b = Runtime(url), Runtime(url)
    try:
        with pytest.raises(StoreError, match="prepared statement"):
            for n in range(8):
                a.execute(ship, {"order": f"P-{n}"})
                b.execute(ship, {"order": f"Q-{n}"})
    finally:
        a.close()
        b.close()
        one.close()


def test_an_unknown_pool_mode_is_refused(bouncer: Bouncer) -> None:
    with pytest.raises(dar.ConfigurationError, match="pool_mode='statement'"):
        Runtime(f"{bouncer.url}?pool_mode=statement")


def test_concurrent_duplicates_wait_by_polling_and_the_effect_runs_once(pooled_url: str) -> None:
    rts = [Runtime(pooled_url, wait=20) for _ in range(4)]
    try:
        assert rts[0].store.on_change("any", lambda: None) is None  # no LISTEN here
        barrier = threading.Barrier(len(rts))
        statuses: list[Status] = []

        def race(rt: Runtime) -> None:
            barrier.wait()
            statuses.append(rt.execute(slow_ship, {"order": "DUP"}).status)

        threads = [threading.Thread(target=race, args=(rt,)) for rt in rts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert Counter(statuses) == {Status.EXECUTED: 1, Status.CACHED: 3}
        assert ran["DUP"] == 1
    finally:
        for rt in rts:
            rt.close()


def test_a_call_waiting_for_approval_runs_once_a_person_approves(pooled_url: str) -> None:
    caller, reviewer = Runtime(pooled_url, tools=[refund]), Runtime(pooled_url)
    try:
        results: list[dar.Result] = []
        args = {"order": "R-1", "amount": 20}
        waiting = threading.Thread(
            target=lambda: results.append(caller.call("refund", args, wait_for_approval=20))
        )
        waiting.start()
        for _ in range(500):
            pending = reviewer.approvals(status="pending")
            if pending:
                break
            threading.Event().wait(0.02)
        reviewer.approve(pending[0].approval_id, by="alice")
        waiting.join(30)
        assert [r.status for r in results] == [Status.EXECUTED]
        assert ran["refund:R-1"] == 1
    finally:
        caller.close()
        reviewer.close()


RUNNING: list[Runtime] = []  # the runtime the durable agent calls through


@dar.agent
def support(order: str) -> str:
    ticket = dar.step("ticket", lambda: f"T-{order}")
    done = RUNNING[0].call("refund", {"order": order, "amount": 20})
    return f"{ticket}; refund {done.status}"


def test_a_durable_run_suspends_and_resumes_through_the_pooler(pooled_url: str) -> None:
    rt = Runtime(pooled_url, tools=[refund])
    RUNNING[:] = [rt]
    try:
        first = rt.start(support, "conv-1", "R-2")
        assert first.status == "suspended" and first.approval_id is not None
        rt.approve(first.approval_id, by="alice")
        (resumed,) = rt.resume()
        assert (resumed.status, resumed.output) == ("finished", "T-R-2; refund executed")
        assert ran["refund:R-2"] == 1
    finally:
        rt.close()
