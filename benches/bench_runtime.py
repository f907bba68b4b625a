"""Per-call cost of the runtime, side by side with DBOS, call4agents and the database's floor.

One run measures everything, so every ratio compares figures taken on the same machine at
the same time:

- sequential latency (median, p99) of a fresh call, a cache hit and a refused call, with a
  no-op handler, on SQLite (a file, synchronous=FULL and NORMAL) and on Postgres;
- the same job in DBOS Transact (a workflow with one step, the key as workflow id) and, on
  SQLite, in call4agents (its own SQLite file);
- the floor: one autocommit INSERT of a row the size of an event row, and one `SELECT 1`;
- throughput on Postgres with 1, 2, 4 and 8 worker processes, distinct keys and hot keys;
- RSS over 100,000 calls in one process; `events(correlation_id=...)` on 1,000,000 rows;
- where a call's time goes: inside the store (database and driver) or in the runtime.

Postgres: DAR_BENCH_POSTGRES_URL, or the same throwaway server the tests start.
Writes benches/out/latency.png and benches/out/results.json; `make bench` runs it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import multiprocessing as mp
import os
import platform
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from dar import Deny, Effect, Runtime, rule, tool  # noqa: E402

OUT = ROOT / "benches" / "out"
ROW = "x" * 300  # about the size of an event row's payload


@tool(effect=Effect.MUTATE_EXTERNAL)
def noop(n: int, run: str) -> int:
    return n


@tool(effect=Effect.MUTATE_EXTERNAL)
def guarded(n: int) -> int:
    return n


refuse = rule(applies_to="guarded", name="refuse_all")(lambda i, c: Deny("refused"))


def timed(fn: Callable[[int], object], n: int, progress: Progress, task: Any) -> list[float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
        progress.advance(task)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "median_us": statistics.median(samples) * 1e6,
        "p99_us": samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e6,
        "n": len(samples),
    }


# --- the candidates --------------------------------------------------------------------------


def dar_cases(url: str, n_fresh: int, n_hit: int) -> dict[str, Callable[[int], object]]:
    rt = Runtime(url, rules=[refuse])
    run = uuid.uuid4().hex
    rt.execute(noop, {"n": -1, "run": run})
    for i in range(50):  # warm up (prepared statements, caches)
        rt.execute(noop, {"n": -1, "run": run})
        rt.execute(noop, {"n": -2 - i, "run": run})
    return {
        "fresh": lambda i: rt.execute(noop, {"n": i, "run": run}),
        "hit": lambda i: rt.execute(noop, {"n": -1, "run": run}),
        "refused": lambda i: rt.execute(guarded, {"n": i}),
    }


def dbos_cases(system_url: str) -> tuple[dict[str, Callable[[int], object]], Callable[[], None]]:
    from dbos import DBOS, SetWorkflowID

    logging.getLogger("dbos").setLevel(logging.ERROR)
    DBOS(
        config={
            "name": "dar-bench",
            "system_database_url": system_url,
            "log_level": "ERROR",
            "console_log_level": "ERROR",
        }
    )

    @DBOS.step()
    def step(n: int) -> int:
        return n

    @DBOS.workflow()
    def workflow(n: int) -> int:
        return step(n)

    DBOS.launch()
    repeat = str(uuid.uuid4())
    with SetWorkflowID(repeat):
        workflow(-1)

    def fresh(i: int) -> object:
        with SetWorkflowID(str(uuid.uuid4())):
            return workflow(i)

    def hit(i: int) -> object:
        with SetWorkflowID(repeat):
            return workflow(-1)

    for i in range(20):
        fresh(i)
        hit(i)
    return {"fresh": fresh, "hit": hit}, DBOS.destroy


def call4agents_cases(path: Path) -> dict[str, Callable[[int], object]]:
    import call4agents as c4a

    c4a.init(str(path))

    @c4a.effect
    def c4a_noop(n: int) -> int:
        return n

    run = uuid.uuid4().hex

    def fresh(i: int) -> object:
        with c4a.run(run):
            return c4a_noop(i)

    def hit(i: int) -> object:
        with c4a.run(run):
            return c4a_noop(-1)

    hit(0)
    for i in range(20):
        fresh(-100 - i)
        hit(i)
    return {"fresh": fresh, "hit": hit}


def sqlite_floor(path: Path, synchronous: str) -> dict[str, Callable[[int], object]]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("CREATE TABLE IF NOT EXISTS floor (id INTEGER PRIMARY KEY, payload TEXT)")
    return {
        "insert": lambda i: conn.execute("INSERT INTO floor (payload) VALUES (?)", (ROW,)),
        "select1": lambda i: conn.execute("SELECT 1").fetchone(),
    }


def pg_floor(url: str) -> dict[str, Callable[[int], object]]:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (id BIGSERIAL PRIMARY KEY, payload TEXT)")
    return {
        "insert": lambda i: conn.execute("INSERT INTO bench_floor (payload) VALUES (%s)", (ROW,)),
        "select1": lambda i: conn.execute("SELECT 1").fetchone(),
    }


# --- throughput ----------------------------------------------------------------------------------


def _throughput_worker(
    url: str, worker: int, hot: bool, seconds: float, barrier: Any, out: Any
) -> None:
    rt = Runtime(url, wait=30)
    run = uuid.uuid4().hex
    barrier.wait()
    deadline = time.perf_counter() + seconds
    calls = 0
    while time.perf_counter() < deadline:
        n = calls % 10 if hot else calls
        rt.execute(noop, {"n": n, "run": "hot" if hot else f"{run}-{worker}"})
        calls += 1
    out.put(calls)
    rt.close()


def throughput(url: str, workers: int, hot: bool, seconds: float) -> float:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=_throughput_worker, args=(url, w, hot, seconds, barrier, out))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=300) for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


# --- memory and the big log ----------------------------------------------------------------


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_over(url: str, calls: int) -> dict[str, float]:
    rt = Runtime(url)
    run = uuid.uuid4().hex
    marks = {}
    for i in range(calls):
        rt.execute(noop, {"n": i % 1000, "run": run})  # 1,000 keys: mostly hits
        if i + 1 in (calls // 10, calls):
            gc.collect()
            marks[i + 1] = rss_mb()
    rt.close()
    first, last = marks[calls // 10], marks[calls]
    return {"rss_mb_after_10pct": first, "rss_mb_at_end": last, "growth_mb": last - first}


def big_log_sqlite(path: Path, rows: int) -> dict[str, Any]:
    rt = Runtime(f"sqlite:///{path}?synchronous=OFF")
    rt.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO agent_tool_events (event_id, tool_name, effect, status, created_at,"
        " correlation_id, input) VALUES (?, 'noop', 'read', 'executed', ?, ?, '{}')",
        ((f"e{i}", 1.8e9 + i, f"session-{i % 100_000}") for i in range(rows)),
    )
    conn.execute("COMMIT")
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM agent_tool_events WHERE correlation_id = ? ORDER BY seq",
        ("session-500",),
    ).fetchall()
    conn.close()
    return time_session_reads(f"sqlite:///{path}", rows, " / ".join(r[-1] for r in plan))


def big_log_postgres(url: str, rows: int) -> dict[str, Any]:
    schema = f"biglog_{uuid.uuid4().hex[:8]}"
    rt = Runtime(f"{url}?schema={schema}")
    rt.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{schema}".agent_tool_events (tool_name, effect, status, created_at,'
            " correlation_id, input) SELECT 'noop', 'read', 'executed', now(),"
            " 'session-' || (i %% 100000), '{}'::jsonb FROM generate_series(1, %s) AS i",
            (rows,),
        )
        conn.execute(f'ANALYZE "{schema}".agent_tool_events')
        plan = conn.execute(
            f'EXPLAIN SELECT * FROM "{schema}".agent_tool_events WHERE correlation_id = %s'
            " ORDER BY seq",
            ("session-500",),
        ).fetchall()
    index_line = next((r[0].strip() for r in plan if "Index" in r[0]), plan[0][0])
    return time_session_reads(f"{url}?schema={schema}", rows, index_line)


def time_session_reads(url: str, rows: int, plan: str) -> dict[str, Any]:
    """Median time of `rt.events(correlation_id=...)` over 50 sessions of the big log."""
    rt = Runtime(url)
    samples = []
    for i in range(50):
        start = time.perf_counter()
        found = rt.events(correlation_id=f"session-{i * 997}")
        samples.append(time.perf_counter() - start)
    rt.close()
    return {
        "rows": rows,
        "events_per_session": len(found),
        "median_ms": statistics.median(samples) * 1e3,
        "plan": plan,
    }


# --- where the time goes ------------------------------------------------------------------------


class TimedStore:
    """Wraps a store and adds up the time spent inside it (database + driver)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.spent = inner, 0.0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return target(*args, **kwargs)
            finally:
                self.spent += time.perf_counter() - start

        return call


def overhead(url: str, n: int) -> dict[str, dict[str, float]]:
    from dar.store import open_store

    store = TimedStore(open_store(url))
    rt = Runtime(store)  # type: ignore[arg-type]
    run = uuid.uuid4().hex
    rt.execute(noop, {"n": -1, "run": run})
    result = {}
    for label, fn in (
        ("fresh", lambda i: rt.execute(noop, {"n": i, "run": run})),
        ("hit", lambda i: rt.execute(noop, {"n": -1, "run": run})),
    ):
        store.spent = 0.0
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        total = (time.perf_counter() - start) / n * 1e6
        inside = store.spent / n * 1e6
        result[label] = {"total_us": total, "store_us": inside, "runtime_us": total - inside}
    rt.close()
    return result


# --- the run -------------------------------------------------------------------------------


def main() -> None:
    console = Console(width=max(Console().width, 150))
    quick = os.environ.get("DAR_BENCH_QUICK") == "1"
    n_fresh, n_hit, n_dbos = (200, 1000, 100) if quick else (1000, 5000, 400)
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="dar-bench-"))
    pg_url = os.environ.get("DAR_BENCH_POSTGRES_URL")
    server = None
    if not pg_url:
        from tests.support.pg import start_server

        server = start_server()
        pg_url = server.url
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS dbos_bench")
        conn.execute("CREATE DATABASE dbos_bench")
    dbos_pg = pg_url.rsplit("/", 1)[0] + "/dbos_bench"

    results: dict[str, Any] = {"latency": {}, "machine": machine()}
    lat = results["latency"]
    plan: list[
        tuple[str, str, Callable[[], dict[str, Callable[[int], object]]], dict[str, int]]
    ] = []

    def add(config: str, who: str, make: Callable[[], Any], counts: dict[str, int]) -> None:
        plan.append((config, who, make, counts))

    for sync in ("FULL", "NORMAL"):
        config = f"SQLite {sync}"
        db = tmp / f"dar-{sync}.db"
        add(
            config,
            "dar",
            lambda db=db, sync=sync: dar_cases(
                f"sqlite:///{db}?synchronous={sync}", n_fresh, n_hit
            ),
            {"fresh": n_fresh, "hit": n_hit, "refused": n_hit},
        )
        add(
            config,
            "floor",
            lambda db=db, sync=sync: sqlite_floor(db.with_suffix(".floor.db"), sync),
            {"insert": n_fresh, "select1": n_hit},
        )
    add(
        "SQLite FULL",
        "call4agents",
        lambda: call4agents_cases(tmp / "c4a.sqlite"),
        {"fresh": n_fresh, "hit": n_hit},
    )
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    add(
        "Postgres",
        "dar",
        lambda: dar_cases(f"{pg_url}?schema={schema}", n_fresh, n_hit),
        {"fresh": n_fresh, "hit": n_hit, "refused": n_hit},
    )
    add("Postgres", "floor", lambda: pg_floor(pg_url), {"insert": n_fresh, "select1": n_hit})

    total = sum(sum(c.values()) for *_, c in plan) + 4 * n_dbos
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("latency", total=total)
        for config, who, make, counts in plan:
            cases = make()
            for case, n in counts.items():
                progress.update(task, description=f"{config}: {who} {case}")
                lat.setdefault(config, {}).setdefault(who, {})[case] = summary(
                    timed(cases[case], n, progress, task)
                )
        # DBOS keeps global state: one configuration per launch.
        for config, system_url in (
            ("SQLite FULL", f"sqlite:///{tmp / 'dbos.sqlite'}"),
            ("Postgres", dbos_pg),
        ):
            cases, destroy = dbos_cases(system_url)
            for case in ("fresh", "hit"):
                progress.update(task, description=f"{config}: DBOS {case}")
                lat.setdefault(config, {}).setdefault("DBOS", {})[case] = summary(
                    timed(cases[case], n_dbos, progress, task)
                )
            destroy()
        lat["SQLite NORMAL"]["DBOS"] = {}  # DBOS sets its own SQLite durability

        seconds = 1.0 if quick else 3.0
        tp: dict[str, dict[str, float]] = {}
        tp_task = progress.add_task("throughput", total=8)
        for workers in (1, 2, 4, 8):
            for hot in (False, True):
                progress.update(
                    tp_task,
                    description=f"throughput: {workers} workers, "
                    f"{'hot' if hot else 'distinct'} keys",
                )
                url = f"{pg_url}?schema=tp_{uuid.uuid4().hex[:8]}"
                Runtime(url).close()  # migrate outside the timing
                tp.setdefault("hot keys" if hot else "distinct keys", {})[str(workers)] = (
                    throughput(url, workers, hot, seconds)
                )
                progress.advance(tp_task)
        results["throughput"] = tp

        progress.update(task, description="memory over 100,000 calls")
        results["memory"] = memory_over(f"sqlite:///{tmp / 'mem.db'}", 20_000 if quick else 100_000)
        rows = 100_000 if quick else 1_000_000
        progress.update(task, description=f"events() on {rows:,} rows")
        results["big_log"] = {
            "SQLite": big_log_sqlite(tmp / "big.db", rows),
            "Postgres": big_log_postgres(pg_url, rows),
        }
        results["overhead"] = {
            "SQLite FULL": overhead(f"sqlite:///{tmp / 'ovh.db'}", n_fresh),
            "Postgres": overhead(f"{pg_url}?schema=ovh_{uuid.uuid4().hex[:8]}", n_fresh),
        }
    if server is not None:
        server.close()

    report(console, results)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    chart(results)
    console.print(f"\nwrote {OUT / 'results.json'} and {OUT / 'latency.png'}")


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "date": time.strftime("%Y-%m-%d"),
    }


def ratio(a: float | None, b: float | None) -> str:
    return "" if not a or not b else f"{b / a:.1f}×"


def report(console: Console, r: dict[str, Any]) -> None:
    table = Table(title="latency per call, µs (median / p99); × = how many times dar is faster")
    for col in (
        "config",
        "case",
        "dar",
        "DBOS",
        "vs DBOS",
        "call4agents",
        "vs call4agents",
        "floor",
        "dar ÷ floor",
    ):
        table.add_column(col, justify="right" if col not in ("config", "case") else "left")
    for config, who in r["latency"].items():
        floor = who.get("floor", {})
        for case in ("fresh", "hit", "refused"):
            ours = who["dar"].get(case)
            if ours is None:
                continue
            dbos = who.get("DBOS", {}).get(case)
            c4a = who.get("call4agents", {}).get(case)
            floor_case = floor.get("insert")
            table.add_row(
                config,
                case,
                f"{ours['median_us']:,.0f} / {ours['p99_us']:,.0f}",
                "" if not dbos else f"{dbos['median_us']:,.0f} / {dbos['p99_us']:,.0f}",
                ratio(ours["median_us"], dbos["median_us"] if dbos else None),
                "" if not c4a else f"{c4a['median_us']:,.0f} / {c4a['p99_us']:,.0f}",
                ratio(ours["median_us"], c4a["median_us"] if c4a else None),
                "" if not floor_case else f"INSERT {floor_case['median_us']:,.0f}",
                "" if not floor_case else f"{ours['median_us'] / floor_case['median_us']:.2f}",
            )
        if floor:
            table.add_row(
                config, "SELECT 1", f"{floor['select1']['median_us']:,.0f}", "", "", "", "", "", ""
            )
    console.print(table)
    tp = Table(title="Postgres throughput, calls per second (no-op handler)")
    tp.add_column("keys")
    for w in ("1", "2", "4", "8"):
        tp.add_column(f"{w} workers", justify="right")
    for keys, row in r["throughput"].items():
        tp.add_row(keys, *(f"{row[w]:,.0f}" for w in ("1", "2", "4", "8")))
    console.print(tp)
    m = r["memory"]
    console.print(
        f"RSS: {m['rss_mb_after_10pct']:.1f} MB after 10% of the calls, "
        f"{m['rss_mb_at_end']:.1f} MB at the end (growth {m['growth_mb']:+.1f} MB)"
    )
    for db, b in r["big_log"].items():
        console.print(
            f"{db}: events(correlation_id=...) on {b['rows']:,} rows: "
            f"{b['median_ms']:.2f} ms median ({b['events_per_session']} events); "
            f"plan: {b['plan']}"
        )
    for db, o in r["overhead"].items():
        for case, v in o.items():
            console.print(
                f"{db} {case}: {v['total_us']:,.0f} µs per call = "
                f"{v['store_us']:,.0f} µs in the store (database + driver) + "
                f"{v['runtime_us']:,.0f} µs in the runtime (Python)"
            )


def chart(r: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, series = [], {}
    for config, who in r["latency"].items():
        for case in ("fresh", "hit"):
            labels.append(f"{config}\n{case}")
            for name in ("dar", "DBOS", "call4agents"):
                value = who.get(name, {}).get(case)
                series.setdefault(name, []).append(value["median_us"] if value else 0)
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.27
    for k, (name, values) in enumerate(series.items()):
        ax.bar([i + (k - 1) * width for i in range(len(labels))], values, width, label=name)
    ax.set_yscale("log")
    ax.set_ylabel("median latency per call (µs, log scale)")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_title("Latency per call: dar vs DBOS vs call4agents (lower is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "latency.png", dpi=110)


if __name__ == "__main__":
    main()
