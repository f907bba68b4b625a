"""Per-call cost of `Runtime` and `AsyncRuntime`, and the async runtime's concurrency.

Measures what the sync/async seam costs: the same no-op tool, sequential calls (median µs of
fresh calls, cache hits and refusals), then N concurrent calls on one event loop (calls/s).
Every figure is from one run, on SQLite (a file, FULL) and on the throwaway Postgres server
the tests use (or ``DAR_BENCH_POSTGRES_URL``).

    .venv/bin/python benches/bench_seam.py [--json OUT]
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dar import AsyncRuntime, Deny, Effect, Runtime, rule, tool


@tool(effect=Effect.MUTATE_LOCAL)
def noop(n: int, run: str) -> int:
    return n


@tool(effect=Effect.MUTATE_LOCAL)
def guarded(n: int) -> int:
    return n


@rule(applies_to="guarded")
def refuse(inp: dict[str, Any], ctx: Any) -> Deny:
    return Deny("no")


N = int(os.environ.get("DAR_BENCH_N", "600"))
CONCURRENT = 200


def sync_case(url: str) -> dict[str, float]:
    rt = Runtime(url, rules=[refuse])
    run = uuid.uuid4().hex
    for i in range(50):
        rt.execute(noop, {"n": -1, "run": run})
        rt.execute(noop, {"n": -2 - i, "run": run})
    out = {}
    cases: dict[str, Callable[[int], object]] = {
        "fresh": lambda i: rt.execute(noop, {"n": i, "run": run}),
        "hit": lambda i: rt.execute(noop, {"n": -1, "run": run}),
        "refused": lambda i: rt.execute(guarded, {"n": i}),
    }
    for name, fn in cases.items():
        samples = []
        for i in range(N):
            t0 = time.perf_counter()
            fn(i)
            samples.append(time.perf_counter() - t0)
        out[name] = statistics.median(samples) * 1e6
    rt.close()
    return out


async def async_case(url: str) -> dict[str, float]:
    rt = AsyncRuntime(url, rules=[refuse])
    run = uuid.uuid4().hex
    for i in range(50):
        await rt.execute(noop, {"n": -1, "run": run})
        await rt.execute(noop, {"n": -2 - i, "run": run})
    out = {}
    cases: dict[str, Callable[[int], Awaitable[object]]] = {
        "fresh": lambda i: rt.execute(noop, {"n": i, "run": run}),
        "hit": lambda i: rt.execute(noop, {"n": -1, "run": run}),
        "refused": lambda i: rt.execute(guarded, {"n": i}),
    }
    for name, fn in cases.items():
        samples = []
        for i in range(N):
            t0 = time.perf_counter()
            await fn(i)
            samples.append(time.perf_counter() - t0)
        out[name] = statistics.median(samples) * 1e6
    # Concurrency: CONCURRENT distinct fresh calls at once, then CONCURRENT duplicates of one.
    for name, same in (("concurrent fresh", False), ("concurrent duplicates", True)):
        best = 0.0
        for rnd in range(3):
            tag = uuid.uuid4().hex
            t0 = time.perf_counter()
            results = await asyncio.gather(
                *(
                    rt.execute(noop, {"n": 0 if same else i, "run": f"{tag}-{rnd}"})
                    for i in range(CONCURRENT)
                )
            )
            elapsed = time.perf_counter() - t0
            assert all(r.ok for r in results), {r.status for r in results}
            best = max(best, CONCURRENT / elapsed)
        out[name + " calls/s"] = best
    await rt.close()
    return out


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="dar-seam-"))
    pg_url = os.environ.get("DAR_BENCH_POSTGRES_URL")
    server = None
    if not pg_url:
        from tests.support.pg import start_server

        server = start_server()
        pg_url = server.url
    results: dict[str, Any] = {}
    try:
        for db, make_url in (
            ("SQLite", lambda: f"sqlite:///{tmp / uuid.uuid4().hex}.db"),
            ("Postgres", lambda: f"{pg_url}?schema=s_{uuid.uuid4().hex[:10]}"),
        ):
            results[db] = {
                "sync": sync_case(make_url()),
                "async": asyncio.run(async_case(make_url())),
            }
    finally:
        if server is not None:
            server.close()
    for db, by_runtime in results.items():
        for runtime, figures in by_runtime.items():
            shown = ", ".join(f"{k} {v:,.0f}" for k, v in figures.items())
            print(f"{db:9} {runtime:5} µs/call (median): {shown}")
    if len(sys.argv) > 2 and sys.argv[1] == "--json":
        Path(sys.argv[2]).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
