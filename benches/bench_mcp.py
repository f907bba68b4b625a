"""What `dar mcp-proxy` adds to a `tools/call`: the same upstream over stdio, called directly
and through the proxy (a fresh call, and the same call answered from the record), p50/p99,
on SQLite (a file, synchronous=FULL) and on Postgres.

For scale, the table also shows one in-process `AsyncRuntime.call` with a no-op handler on
the same database. The proxy's target: no more than one `rt.call` plus 0.3 ms, and a cached
call through the proxy faster than calling an upstream tool that takes 1 ms directly.

    PYTHONPATH=python python benches/bench_mcp.py [N]

Postgres: DAR_BENCH_POSTGRES_URL, or the throwaway server the tests start.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dar import AsyncRuntime, Effect, tool  # noqa: E402

UPSTREAM = [sys.executable, str(ROOT / "benches" / "mcp_upstream.py")]
WARMUP = 20


def env() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT / "python"), str(ROOT)])
    return {**os.environ, "PYTHONPATH": path}


@asynccontextmanager
async def session(command: list[str]) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=command[0], args=command[1:], env=env())
    async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        await s.list_tools()
        yield s


async def timed(s: ClientSession, first: int, n: int, ms: float = 0.0) -> list[float]:
    """Milliseconds per call of ``work(i)`` for i in first..first+n."""
    out = []
    for i in range(first, first + n):
        started = time.perf_counter()
        result = await s.call_tool("work", {"i": i, "ms": ms})
        out.append((time.perf_counter() - started) * 1000.0)
        assert not result.is_error, result
    return out


def proxy_command(db: str) -> list[str]:
    return [sys.executable, "-m", "dar", "mcp-proxy", "--db", db, "--", *UPSTREAM]


async def measure(db: str, n: int) -> dict[str, list[float]]:
    series: dict[str, list[float]] = {}
    async with session(UPSTREAM) as direct:
        await timed(direct, 0, WARMUP)
        series["direct"] = await timed(direct, 1000, n)
        series["direct, tool takes 1 ms"] = await timed(direct, 1000, n, ms=1.0)
    async with session(proxy_command(db)) as proxy:
        await timed(proxy, 0, WARMUP)
        series["proxy, fresh"] = await timed(proxy, 1000, n)
        series["proxy, cached"] = await timed(proxy, 1000, n)
        await timed(proxy, 5000, n, ms=1.0)
        series["proxy, cached, tool takes 1 ms"] = await timed(proxy, 5000, n, ms=1.0)
    series["rt.call alone (in process)"] = await in_process(db, n)
    return series


@tool(effect=Effect.MUTATE_EXTERNAL)
async def noop(i: int, run: str) -> int:
    return i


async def in_process(db: str, n: int) -> list[float]:
    run = uuid.uuid4().hex
    rt = AsyncRuntime(db, tools=[noop])
    out = []
    for i in range(WARMUP + n):
        started = time.perf_counter()
        await rt.call("noop", {"i": i, "run": run})
        out.append((time.perf_counter() - started) * 1000.0)
    await rt.close()
    return out[WARMUP:]


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(name: str, series: dict[str, list[float]]) -> Table:
    t = Table(title=f"tools/call over stdio, {name} (ms; added = p50 minus direct's p50)")
    for col in ("path", "p50", "p99", "added p50"):
        t.add_column(col, justify="left" if col == "path" else "right")
    base = statistics.median(series["direct"])
    for label, values in series.items():
        added = "" if label.startswith(("direct", "rt.call")) else f"{p(values, 0.5) - base:+.2f}"
        t.add_row(label, f"{p(values, 0.5):.2f}", f"{p(values, 0.99):.2f}", added)
    return t


def postgres_url() -> tuple[str, object | None]:
    given = os.environ.get("DAR_BENCH_POSTGRES_URL")
    if given:
        return given, None
    from tests.support.pg import start_server

    server = start_server()
    return server.url, server


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = f"sqlite:///{Path(tmp) / 'bench.db'}"
        console.print(table("SQLite file, synchronous=FULL", anyio.run(measure, sqlite, n)))
    url, server = postgres_url()
    try:
        pg = f"{url}?schema=mcp_{uuid.uuid4().hex[:8]}"
        console.print(table("Postgres", anyio.run(measure, pg, n)))
    finally:
        if server is not None:
            server.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
