"""What the tamper-evident hash chain costs on Postgres: throughput with and without it.

Workers (threads, one runtime each) make fresh calls, each in its own session or all in one
shared session, against the same throwaway server the tests use (or DAR_BENCH_POSTGRES_URL).
Run with `make bench`.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dar import Effect, Runtime, tool
from dar.store.postgres import PostgresStore


@tool(effect=Effect.MUTATE_EXTERNAL)
def noop(n: int, worker: int) -> int:
    return n


def run(url: str, chain: bool, workers: int, calls: int, shared_session: bool) -> float:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    PostgresStore(url, schema=schema).close()  # migrate outside the timing
    runtimes = [
        Runtime(PostgresStore(url, schema=schema, hash_chain=chain, migrate=False))
        for _ in range(workers)
    ]
    barrier = threading.Barrier(workers + 1)

    def work(i: int) -> None:
        session = "shared" if shared_session else f"session-{i}"
        barrier.wait()
        for n in range(calls):
            runtimes[i].execute(noop, {"n": n, "worker": i}, correlation_id=session)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for rt in runtimes:
        rt.close()
    return workers * calls / elapsed


def main() -> None:
    console = Console()
    url = os.environ.get("DAR_BENCH_POSTGRES_URL")
    server = None
    if not url:
        from tests.support.pg import start_server

        server = start_server()
        url = server.url
    try:
        rounds = 5
        table = Table(
            title=f"fresh calls per second on Postgres, 4 threads x 300 calls, "
            f"median of {rounds} alternating rounds"
        )
        for col in ("sessions", "without chain", "with chain", "with / without"):
            table.add_column(col, justify="right")
        for shared in (False, True):
            run(url, True, 2, 50, shared)  # warm-up
            without, with_chain = [], []
            for _ in range(rounds):  # alternate, so drift hits both alike
                without.append(run(url, False, 4, 300, shared))
                with_chain.append(run(url, True, 4, 300, shared))
            a, b = statistics.median(without), statistics.median(with_chain)
            table.add_row(
                "one shared" if shared else "one per worker",
                f"{a:,.0f}",
                f"{b:,.0f}",
                f"{b / a:.2f}",
            )
        console.print(table)
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
