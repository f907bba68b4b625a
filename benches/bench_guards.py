"""What guards cost, and whether they hold under a race, on SQLite and Postgres.

Per store, in one run, sequential calls of a no-op ``mutate-external`` handler, each with a
fresh input (every call is judged and runs), median and p99 in µs:

- ``unguarded``: the tool with no guard;
- ``Budget``: the same tool with ``Budget(limit, of="amount", per=("customer_id",))``
  (a limit no call reaches): the reservation's transaction before the claim, and its
  settlement after;
- ``Similar``: ``Similar("message", same=("to",), scope="global")`` over distinct messages to
  one recipient, with the default offline embedder: the embedding, the comparison with
  every earlier message of the scope in the window, and the reservation.

Then the embedding alone (the default embedder, one text per call, warm) and the race:
``PROCS`` processes × ``CALLS`` refunds of 50 against ``Budget(500)``: limit, demand,
executed.

    PYTHONPATH=python:. python benches/bench_guards.py [N]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support import guards as race_support

from dar import Budget, Effect, Runtime, Similar, tool
from dar.embedding import default_embedder

PROCS, CALLS = 20, 3


@tool(effect=Effect.MUTATE_EXTERNAL)
def plain(customer_id: str, to: str, message: str, amount: float) -> None:
    return None


@tool(
    name="budgeted",
    effect=Effect.MUTATE_EXTERNAL,
    guards=[Budget(1e12, of="amount", per=("customer_id",), within="24h")],
)
def budgeted(customer_id: str, to: str, message: str, amount: float) -> None:
    return None


@tool(
    name="similar",
    effect=Effect.MUTATE_EXTERNAL,
    guards=[Similar("message", same=("to",), within="10m", scope="global")],
)
def similar(customer_id: str, to: str, message: str, amount: float) -> None:
    return None


def percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def latency(url: str, t: Any, n: int) -> tuple[float, float]:
    rt = Runtime(url, tools=[t])
    run = uuid.uuid4().hex[:6]
    for i in range(20):  # warm up: connections, statements, the embedder
        rt.execute(t, inputs(f"w{run}", i))
    times = []
    for i in range(n):
        inp = inputs(run, i)
        start = time.perf_counter()
        rt.execute(t, inp)
        times.append((time.perf_counter() - start) * 1e6)
    rt.close()
    return percentiles(times)


def inputs(run: str, i: int) -> dict[str, Any]:
    # Distinct facts in every message (an order id), so no call is held as a repeat.
    message = f"Your order ORD-{run}-{i} ships tomorrow; the refund of {i} EUR is issued"
    return {"customer_id": "C-1", "to": "+34600000001", "message": message, "amount": 1.0}


def embedding_cost(n: int) -> tuple[float, float]:
    embed = default_embedder()
    times = []
    for i in range(n):
        text = inputs("e", i)["message"]
        start = time.perf_counter()
        embed([text])
        times.append((time.perf_counter() - start) * 1e6)
    return percentiles(times)


def race(url: str) -> tuple[float, float, float]:
    Runtime(url).close()  # migrate before the race
    ctx = mp.get_context("forkserver")
    barrier, out = ctx.Barrier(PROCS), ctx.Queue()
    procs = [
        ctx.Process(target=race_support.refund_worker, args=(url, w, CALLS, 50.0, barrier, out))
        for w in range(PROCS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    rt = Runtime(url)
    executed = sum(float(r.output["refunded"]) for r in rt.events(status="executed"))
    rt.close()
    return race_support.LIMIT, PROCS * CALLS * 50.0, executed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    tmp = Path(tempfile.mkdtemp(prefix="dar-guards-"))
    pg_url = os.environ.get("DAR_BENCH_POSTGRES_URL")
    server = None
    if not pg_url:
        from tests.support.pg import start_server

        server = start_server()
        pg_url = server.url
    stores: list[tuple[str, Callable[[], str]]] = [
        ("SQLite", lambda: f"sqlite:///{tmp / uuid.uuid4().hex}.db"),
        ("Postgres", lambda: f"{pg_url}?schema=s_{uuid.uuid4().hex[:10]}"),
    ]
    try:
        print(f"µs per call, median / p99, {n} sequential calls (fresh inputs)")
        print(f"{'database':9} {'case':10} {'median':>9} {'p99':>9} {'× unguarded':>12}")
        for db, make_url in stores:
            base = latency(make_url(), plain, n)
            for label, t in (("unguarded", plain), ("Budget", budgeted), ("Similar", similar)):
                med, p99 = base if t is plain else latency(make_url(), t, n)
                print(f"{db:9} {label:10} {med:9,.0f} {p99:9,.0f} {med / base[0]:12.2f}")
        med, p99 = embedding_cost(n)
        print(f"embedding one text (default offline embedder): {med:,.0f} / {p99:,.0f} µs")
        for db, make_url in stores:
            limit, demand, executed = race(make_url())
            print(
                f"race {db}: {PROCS} processes × {CALLS} refunds of 50: limit {limit:g}, "
                f"demand {demand:g}, executed {executed:g}"
            )
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
