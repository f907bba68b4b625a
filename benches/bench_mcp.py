"""What `dar mcp-proxy` adds to a `tools/call`: the same upstream over stdio, called directly,
through the proxy's SDK path (`--sdk-path`: every request through the MCP SDK's objects) and
through its fast path (the default: `tools/call` at the JSON-RPC level), a fresh call and the
same call answered from the record, p50/p99 and the CPU each process spends per call, on
SQLite (a file, synchronous=FULL) and on Postgres.

The three sessions are open at once and called in turns, a block of calls each, so a busy
machine slows them alike. For scale, the table also shows one in-process `AsyncRuntime.call`
with a no-op handler on the same database, with its CPU per call: as a program runs it (store
operations in worker threads), and with its store operations on the event loop
(`STORE_ON_LOOP`, as the proxy runs them on stdio). The proxy's target: a fresh call adds no
more than one `rt.call` (the first, the default) plus 0.3 ms.

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
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dar import AsyncRuntime, Effect, tool  # noqa: E402
from dar.runtime.execute import STORE_ON_LOOP  # noqa: E402

UPSTREAM = [sys.executable, str(ROOT / "benches" / "mcp_upstream.py")]
WARMUP = 20
BLOCK = 25  # calls per turn
TICK = os.sysconf("SC_CLK_TCK")


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


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
                found.append(int(entry))
    return found


def cpu(pid: int) -> float:
    """Seconds of CPU (user and system, every thread) process ``pid`` has used."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


@dataclass
class Path_:
    """One way to the upstream: its session, processes and what was measured."""

    label: str
    s: ClientSession
    pids: list[int]  # [proxy, upstream] or [upstream]
    ms: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)  # seconds per process

    async def turn(self, phase: str, first: int, n: int, ms: float = 0.0) -> None:
        before = [cpu(p) for p in self.pids]
        out = self.ms.setdefault(phase, [])
        for i in range(first, first + n):
            started = time.perf_counter()
            result = await self.s.call_tool("work", {"i": i, "ms": ms})
            out.append((time.perf_counter() - started) * 1000.0)
            assert not result.is_error, result
        spent = [cpu(p) - b for p, b in zip(self.pids, before, strict=True)]
        total = self.cpu.setdefault(phase, [0.0] * len(spent))
        self.cpu[phase] = [t + x for t, x in zip(total, spent, strict=True)]


def proxy_command(db: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dar", "mcp-proxy", *extra, "--db", db, "--", *UPSTREAM]


async def opened(stack: AsyncExitStack, label: str, command: list[str]) -> Path_:
    known = set(children(os.getpid()))
    s = await stack.enter_async_context(session(command))
    [pid] = [p for p in children(os.getpid()) if p not in known]
    pids = [pid, *children(pid)] if "mcp-proxy" in command else [pid]
    path = Path_(label, s, pids)
    await path.turn("warmup", 0, WARMUP)
    return path


async def measure(db: str, n: int) -> list[Path_]:
    async with AsyncExitStack() as stack:
        paths = [
            await opened(stack, "direct", UPSTREAM),
            await opened(stack, "proxy, SDK path", proxy_command(f"{db}_sdk", "--sdk-path")),
            await opened(stack, "proxy, fast path", proxy_command(f"{db}_fast")),
        ]
        for k, first in enumerate(range(1000, 1000 + n, BLOCK)):
            # Each path goes first in turn: a path's writes still settling (an fsync, a
            # checkpoint) would otherwise always slow the one after it.
            order = paths[k % 3 :] + paths[: k % 3]
            for path in order:
                await path.turn("fresh", first, BLOCK)
            for path in order:
                if path is not paths[0]:
                    await path.turn("cached", first, BLOCK)
        return paths


@tool(effect=Effect.MUTATE_EXTERNAL)
async def noop(i: int, run: str) -> int:
    return i


@dataclass
class InProcess:
    """One in-process `rt.call` per fresh call: milliseconds each, CPU per call (ms)."""

    label: str
    ms: list[float]
    cpu: float


async def in_process_calls(db: str, n: int, on_loop: bool) -> InProcess:
    STORE_ON_LOOP.set(on_loop)
    run = uuid.uuid4().hex
    rt = AsyncRuntime(db, tools=[noop])
    out = []
    for i in range(WARMUP + n):
        if i == WARMUP:
            cpu_before = time.process_time()
        started = time.perf_counter()
        await rt.call("noop", {"i": i, "run": run})
        out.append((time.perf_counter() - started) * 1000.0)
    spent = (time.process_time() - cpu_before) * 1000.0 / n
    await rt.close()
    label = "store on the loop" if on_loop else "store in threads"
    return InProcess(f"rt.call alone (in process, {label})", out[WARMUP:], spent)


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(name: str, paths: list[Path_], in_process: list[InProcess]) -> Table:
    t = Table(
        title=f"tools/call over stdio, {name} (ms; added = p50 minus direct's p50; "
        "CPU = milliseconds of CPU per call, the proxy's process (rt.call alone: the "
        "benchmark's) / the upstream's)"
    )
    for col in ("path", "p50", "p99", "added p50", "proxy CPU", "upstream CPU"):
        t.add_column(col, justify="left" if col == "path" else "right")
    base = statistics.median(paths[0].ms["fresh"])
    for path in paths:
        for phase in ("fresh", "cached"):
            if phase not in path.ms:
                continue
            values = path.ms[phase]
            per_call = [1000.0 * c / len(values) for c in path.cpu[phase]]
            proxy_cpu = f"{per_call[0]:.2f}" if len(per_call) == 2 else ""
            added = f"{p(values, 0.5) - base:+.2f}" if path.label != "direct" else ""
            t.add_row(
                f"{path.label}, {phase}",
                f"{p(values, 0.5):.2f}",
                f"{p(values, 0.99):.2f}",
                added,
                proxy_cpu,
                f"{per_call[-1]:.2f}",
            )
    for alone in in_process:
        t.add_row(
            alone.label,
            f"{p(alone.ms, 0.5):.2f}",
            f"{p(alone.ms, 0.99):.2f}",
            "",
            f"{alone.cpu:.2f}",
        )
    return t


def ratios(paths: list[Path_], in_process: list[InProcess]) -> str:
    base = p(paths[0].ms["fresh"], 0.5)
    sdk, fast = (p(x.ms["fresh"], 0.5) - base for x in paths[1:])
    sdk_cpu, fast_cpu = (x.cpu["fresh"][0] for x in paths[1:])
    target = p(in_process[0].ms, 0.5) + 0.3
    return (
        f"fresh call, added latency: fast path {fast:+.2f} ms, SDK path {sdk:+.2f} ms "
        f"(fast / SDK = {fast / sdk:.2f}); proxy CPU fast / SDK = {fast_cpu / sdk_cpu:.2f}; "
        f"target (rt.call + 0.3 ms) {target:.2f} ms: fast path / target = {fast / target:.2f}"
    )


def run(console: Console, name: str, db: str, n: int) -> None:
    paths = anyio.run(measure, db, n)
    alone = [anyio.run(in_process_calls, f"{db}_rt{k}", n, k == 1) for k in (0, 1)]
    console.print(table(name, paths, alone))
    console.print(ratios(paths, alone))


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
        run(console, "SQLite file, synchronous=FULL", f"sqlite:///{Path(tmp) / 'bench'}", n)
    url, server = postgres_url()
    try:
        run(console, "Postgres", f"{url}?schema=mcp_{uuid.uuid4().hex[:8]}", n)
    finally:
        if server is not None:
            server.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
