"""Many hosts and PgBouncer: distinct fresh calls per second from worker processes on one
host and split across two (network namespaces on a bridge, each with its own address),
straight to Postgres and through PgBouncer in transaction pooling mode, in one run.

Every case runs the same number of worker processes for the same time, interleaved over
several rounds (the median is shown). Besides calls/s it reads the server's CPU time from
/proc (the postmaster and its backends; PgBouncer's own process too), which gives what one
Postgres core carries: calls per CPU-second of the server. Postgres is a throwaway server
like the tests' one, but with fsync on (as in production). Needs root, iproute2, pgbouncer.

    PYTHONPATH=python .venv/bin/python benches/bench_hosts.py [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.hosts import Hosts, release, results  # noqa: E402
from tests.support.pg import LocalServer, _bindir  # noqa: E402
from tests.support.pgbouncer import Bouncer  # noqa: E402

from dar import Runtime  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children: live ones, and those it has reaped."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        ppid, utime, stime, cutime, cstime = (int(fields[i]) for i in (1, 11, 12, 13, 14))
        if int(entry.name) == pid:
            total += utime + stime + cutime + cstime
        elif ppid == pid:
            total += utime + stime
    return total / TICK


@dataclass
class Case:
    name: str
    hosts: list[int]  # the host of each worker process
    via_bouncer: bool
    pool_mode: str = "session"  # "transaction" straight to Postgres: no prepared statements


@dataclass
class Sample:
    calls_per_s: float
    server_cpu: float  # Postgres CPU-seconds per second of wall time
    bouncer_cpu: float


def run(case: Case, env: dict[str, object], seconds: float) -> Sample:
    hosts: Hosts = env["hosts"]  # type: ignore[assignment]
    server: LocalServer = env["server"]  # type: ignore[assignment]
    bouncer: Bouncer = env["bouncer"]  # type: ignore[assignment]
    schema = f"bh_{uuid.uuid4().hex[:10]}"
    Runtime(f"{server.url}?schema={schema}").close()  # migrated outside the timing
    if case.via_bouncer:
        url = f"{bouncer.url_at(hosts.server_address)}?schema={schema}&pool_mode=transaction"
    else:
        url = f"{server.url_at(hosts.server_address)}?schema={schema}&pool_mode={case.pool_mode}"
    folder = Path(tempfile.mkdtemp(prefix="dar-bench-hosts-"))
    names = [f"w{i}" for i in range(len(case.hosts))]
    job = {"mode": "bench", "url": url, "go": str(folder / "go"), "marks": str(folder)}
    procs = [
        hosts.spawn(h, {**job, "name": n, "seconds": seconds})
        for h, n in zip(case.hosts, names, strict=True)
    ]
    pg_pid = int((server.data / "postmaster.pid").read_text().split()[0])
    pb_pid = int((bouncer.dir / "pid").read_text())
    release(job["go"], job["marks"], names)
    pg0, pb0, t0 = cpu_seconds(pg_pid), cpu_seconds(pb_pid), time.perf_counter()
    time.sleep(seconds)
    pg1, pb1, t1 = cpu_seconds(pg_pid), cpu_seconds(pb_pid), time.perf_counter()
    calls = sum(results(p)["calls"] for p in procs)
    return Sample(calls / seconds, (pg1 - pg0) / (t1 - t0), (pb1 - pb0) / (t1 - t0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="worker processes (even)")
    args = parser.parse_args()
    n = args.workers
    cases = [
        Case(f"one host, {n // 2} workers", [0] * (n // 2), False),
        Case(f"one host, {n} workers", [0] * n, False),
        Case(f"two hosts, {n // 2} + {n // 2} workers", [0, 1] * (n // 2), False),
        Case(f"one host, {n} workers, no prepared statements", [0] * n, False, "transaction"),
        Case(f"one host, {n} workers, PgBouncer", [0] * n, True),
        Case(f"two hosts, {n // 2} + {n // 2}, PgBouncer", [0, 1] * (n // 2), True),
    ]
    bindir = _bindir()
    assert bindir is not None, "needs Postgres binaries (pg_ctl)"
    hosts = Hosts(2)
    server = LocalServer(bindir, listen=(hosts.server_address,))
    bouncer = Bouncer(server.url, pool_size=n, listen=(hosts.server_address,))
    try:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET fsync = on")
            conn.execute("ALTER SYSTEM SET full_page_writes = on")
            conn.execute("SELECT pg_reload_conf()")
        env: dict[str, object] = {"hosts": hosts, "server": server, "bouncer": bouncer}
        samples: dict[str, list[Sample]] = {c.name: [] for c in cases}
        for _ in range(args.rounds):
            for case in cases:
                samples[case.name].append(run(case, env, args.seconds))
    finally:
        bouncer.close()
        server.close()
        hosts.close()
    show(cases, samples, n, args)


def show(cases: list[Case], samples: dict[str, list[Sample]], n: int, args: object) -> None:
    def med(name: str, attr: str) -> float:
        return float(statistics.median(getattr(s, attr) for s in samples[name]))

    base = med(cases[1].name, "calls_per_s")  # one host, n workers, direct
    table = Table(title=f"distinct fresh calls/s, median of {len(samples[cases[0].name])}")
    for col in ("case", "calls/s", "÷ one host, n workers", "Postgres CPU", "calls per PG core-s"):
        table.add_column(col, justify="left" if col == "case" else "right")
    table.add_column("PgBouncer CPU", justify="right")
    for case in cases:
        rate, pg = med(case.name, "calls_per_s"), med(case.name, "server_cpu")
        pb = med(case.name, "bouncer_cpu") if case.via_bouncer else 0.0
        table.add_row(
            case.name,
            f"{rate:,.0f}",
            f"{rate / base:.2f}",
            f"{pg:.2f} cores",
            f"{rate / pg:,.0f}" if pg else "-",
            f"{pb:.2f} cores" if case.via_bouncer else "",
        )
    Console(width=150).print(table)
    print(f"machine: {os.cpu_count()} cores; argv: {' '.join(sys.argv[1:]) or '(defaults)'}")


if __name__ == "__main__":
    main()
