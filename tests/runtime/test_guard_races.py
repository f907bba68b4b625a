"""Guards stay exact under concurrency: processes, threads and asyncio tasks racing one
budget never execute more than its limit, and reach it when demand exceeds it; two workers
sending near-duplicates at one instant send one."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import threading
from pathlib import Path
from typing import Any

from dar import AsyncRuntime, Runtime, Status
from tests.support import guards as support
from tests.support.guards import LIMIT, refund

CTX = mp.get_context("forkserver")
AMOUNT = 50.0


def _processes(target: Any, args: list[tuple[Any, ...]]) -> list[str]:
    barrier, out = CTX.Barrier(len(args)), CTX.Queue()
    procs = [CTX.Process(target=target, args=(*a, barrier, out)) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    found: list[str] = []
    while not out.empty():
        found.append(out.get())
    return found


def _executed_total(url: str) -> float:
    rt = Runtime(url)
    rows = rt.events(tool="refund", status="executed")
    rt.close()
    return sum(float(r.output["refunded"]) for r in rows)


def test_processes_racing_one_budget_spend_exactly_the_limit(shared_url: str) -> None:
    Runtime(shared_url).close()  # migrated once, before the race
    workers, calls = 4, 4  # demand 800 against a limit of 500
    statuses = _processes(
        support.refund_worker, [(shared_url, w, calls, AMOUNT) for w in range(workers)]
    )
    assert len(statuses) == workers * calls
    assert statuses.count("executed") == LIMIT / AMOUNT
    assert set(statuses) == {"executed", "rejected"}
    assert _executed_total(shared_url) == LIMIT


def test_threads_racing_one_budget_spend_exactly_the_limit(shared_url: str) -> None:
    rt = Runtime(shared_url, wait=60)
    statuses = support.refund_threads(rt, threads=8, calls=2, amount=AMOUNT)
    rt.close()
    assert statuses.count(Status.EXECUTED) == LIMIT / AMOUNT
    assert _executed_total(shared_url) == LIMIT


def test_tasks_racing_one_budget_spend_exactly_the_limit(shared_url: str) -> None:
    async def race() -> list[Status]:
        rt = AsyncRuntime(shared_url, wait=60)
        try:
            return await support.refund_tasks(rt, tasks=16, amount=AMOUNT)
        finally:
            await rt.close()

    statuses = asyncio.run(race())
    assert statuses.count(Status.EXECUTED) == LIMIT / AMOUNT
    assert _executed_total(shared_url) == LIMIT


def test_two_workers_sending_near_duplicates_at_once_send_one(shared_url: str) -> None:
    Runtime(shared_url).close()
    messages = ["Your order ORD-1 ships tomorrow", "Good news: ORD-1 will be shipped tomorrow!"]
    statuses = _processes(support.message_worker, [(shared_url, m) for m in messages])
    assert sorted(statuses) == ["awaiting_approval", "executed"]


def test_calls_that_lose_the_key_give_their_share_back(tmp_path: Path) -> None:
    """A call that loses its key to a concurrent identical call gives its share back."""
    url = f"sqlite:///{tmp_path / 'agent.db'}"
    rt = Runtime(url, wait=60)
    same = {"customer_id": "C-1", "order_id": "O-1", "amount": 400.0}
    statuses: list[Status] = []
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        statuses.append(rt.execute(refund, same).status)

    pool = [threading.Thread(target=work) for _ in range(4)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert statuses.count(Status.EXECUTED) == 1
    assert set(statuses) <= {Status.EXECUTED, Status.CACHED}
    other = rt.execute(refund, {"customer_id": "C-1", "order_id": "O-2", "amount": 100.0})
    assert other.status is Status.EXECUTED  # 400 + 100: the losers' shares were given back
    rt.close()
