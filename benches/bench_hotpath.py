"""The hot path of a call against the database's floor, two trees side by side in one run.

Why: a fresh call's figure only means something next to what the same server gives a bare
`INSERT` + commit at that moment, and a change only next to the tree before it. So each round
runs one child process per tree (the tree's `python/` first on its path), and every child
measures everything on the same Postgres server (fsync and full_page_writes on, unlike the
test server) and a SQLite file (WAL, synchronous=FULL):

- Postgres fresh call and cache hit (median µs), one `INSERT` + commit and one `SELECT 1`,
  and a fresh call's two statements replayed on a bare connection (the database's share);
- client CPU per fresh call (`time.process_time` over the fresh calls);
- DBOS (a workflow with one step) fresh, call4agents (its Postgres store) hit;
- SQLite fresh call and one `INSERT` + commit;
- distinct fresh calls/s with 1, 2, 4 and 8 worker processes.

Rounds alternate the trees; each figure is the median over the rounds.

    DAR_BENCH_BEFORE=/work/main/python .venv/bin/python benches/bench_hotpath.py [ROUNDS]

Without DAR_BENCH_BEFORE only this tree runs. DAR_BENCH_QUICK=1 uses fewer calls;
DAR_BENCH_FSYNC=off keeps the test server's fsync=off (CPU-bound figures, no disk).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ROW = "x" * 300
QUICK = os.environ.get("DAR_BENCH_QUICK") == "1"
N_FRESH, N_HIT, N_OTHER = (300, 600, 100) if QUICK else (1000, 2000, 200)
SECONDS = 1.0 if QUICK else 2.0
WORKERS = (1, 2, 4, 8)


def median_us(fn: Callable[[int], object], n: int) -> float:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


# --- in a child: one tree ---------------------------------------------------------------------


def _noop_tool() -> Any:
    from dar import Effect, tool

    @tool(effect=Effect.MUTATE_EXTERNAL)
    def noop(n: int, run: str) -> int:
        return n

    return noop


def dar_figures(url: str) -> dict[str, float]:
    from dar import Runtime

    noop = _noop_tool()
    rt = Runtime(url)
    run = uuid.uuid4().hex
    for i in range(50):  # warm up: prepared statements, caches
        rt.execute(noop, {"n": -1, "run": run})
        rt.execute(noop, {"n": -2 - i, "run": run})
    cpu = time.process_time()
    fresh = median_us(lambda i: rt.execute(noop, {"n": i, "run": run}), N_FRESH)
    cpu = (time.process_time() - cpu) / N_FRESH * 1e6
    hit = median_us(lambda i: rt.execute(noop, {"n": -1, "run": run}), N_HIT)
    rt.close()
    return {"fresh": fresh, "hit": hit, "cpu": cpu}


def pg_floor(url: str) -> dict[str, float]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_floor (id BIGSERIAL PRIMARY KEY, payload TEXT)"
        )
        insert = median_us(
            lambda i: conn.execute("INSERT INTO bench_floor (payload) VALUES (%s)", (ROW,)),
            N_FRESH,
        )
        select1 = median_us(lambda i: conn.execute("SELECT 1").fetchone(), N_HIT)
    return {"insert": insert, "select1": select1}


def pg_statements(url: str) -> dict[str, float]:
    """A fresh call's two statements (claim-or-look-up, outcome) and a hit's one (the
    look-up), as `dar` sends them, replayed on a bare connection with nothing around them:
    what the database alone costs."""
    import dataclasses

    import psycopg

    from dar.store import postgres_sql as q

    captured: dict[str, Any] = {}
    take_or_lookup, finish = q.take_or_lookup, q.finish

    def keep(name: str, plan: Any) -> Any:
        def plan_and_keep(st: Any, op: Any) -> Any:
            captured[name] = (st, op)
            return plan(st, op)

        return plan_and_keep

    q.take_or_lookup, q.finish = keep("take", take_or_lookup), keep("finish", finish)
    try:
        dar_figures_once(url)
    finally:
        q.take_or_lookup, q.finish = take_or_lookup, finish
    (st, take), (_, done) = captured["take"], captured["finish"]

    def params(i: int) -> tuple[Any, Any]:
        key, ids = f"bare-{uuid.uuid4()}", (str(uuid.uuid4()), str(uuid.uuid4()))
        started = dataclasses.replace(take.take.started, event_id=ids[0], idempotency_key=key)
        claim = dataclasses.replace(take.take, key=key, started=started)
        outcome = dataclasses.replace(done.event, event_id=ids[1], idempotency_key=key)
        first = next(q.take_or_lookup(st, dataclasses.replace(take, take=claim)))
        second = next(q.finish(st, dataclasses.replace(done, key=key, event=outcome)))
        return first, second

    queries = [params(i) for i in range(N_FRESH)]
    with psycopg.connect(url.split("?")[0], autocommit=True, prepare_threshold=0) as conn:

        def both(i: int) -> None:
            for query in queries[i]:
                conn.execute(query.sql, query.params).fetchone()

        fresh = median_us(both, N_FRESH)
        # A hit's one statement, the claim's look-up, on a key both statements just wrote.
        lookup = queries[0][0].params["key"]
        hit = median_us(lambda i: conn.execute(st.select_claim, {"key": lookup}).fetchone(), N_HIT)
    return {"statements": fresh, "lookup": hit}


def dar_figures_once(url: str) -> None:
    from dar import Runtime

    rt = Runtime(url)
    rt.execute(_noop_tool(), {"n": 0, "run": uuid.uuid4().hex})
    rt.close()


def sqlite_floor(path: Path) -> float:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS floor (id INTEGER PRIMARY KEY, payload TEXT)")
    insert = median_us(
        lambda i: conn.execute("INSERT INTO floor (payload) VALUES (?)", (ROW,)), N_FRESH
    )
    conn.close()
    return insert


def dbos_fresh(url: str) -> float:
    from bench_runtime import dbos_cases  # the same workflow of one step as bench_runtime's

    cases, destroy = dbos_cases(url)
    figure = median_us(cases["fresh"], N_OTHER)
    destroy()
    return figure


def c4a_hit(url: str) -> float:
    import call4agents as c4a

    c4a.init(url, secret=b"bench-secret-bench-secret-bench!")

    @c4a.effect
    def c4a_noop(n: int) -> int:
        return n

    run = uuid.uuid4().hex

    def hit(i: int) -> object:
        with c4a.run(run):
            return c4a_noop(-1)

    for i in range(20):
        hit(i)
    return median_us(hit, N_HIT)


def _worker(url: str, worker: int, seconds: float, barrier: Any, out: Any) -> None:
    from dar import Runtime

    noop = _noop_tool()
    rt = Runtime(url, wait=30)
    run = f"{uuid.uuid4().hex}-{worker}"
    rt.execute(noop, {"n": -1, "run": run})
    barrier.wait()
    deadline = time.perf_counter() + seconds
    calls = 0
    while time.perf_counter() < deadline:
        rt.execute(noop, {"n": calls, "run": run})
        calls += 1
    out.put(calls)
    rt.close()


def throughput(url: str, workers: int) -> float:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, w, SECONDS, barrier, out)) for w in range(workers)
    ]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=300) for _ in procs)
    for p in procs:
        p.join()
    return total / SECONDS


def child(pg_url: str, dbos_url: str, c4a_url: str) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="dar-hot-"))
    schema = f"hot_{uuid.uuid4().hex[:8]}"
    figures: dict[str, float] = {}
    for name, value in dar_figures(f"{pg_url}?schema={schema}").items():
        figures[f"pg {name}"] = value
    figures.update({f"pg {k}": v for k, v in pg_floor(pg_url).items()})
    for name, value in pg_statements(f"{pg_url}?schema={schema}").items():
        figures[f"pg {name}"] = value
    sqlite = dar_figures(f"sqlite:///{tmp / 'dar.db'}?synchronous=FULL")
    figures["sqlite fresh"] = sqlite["fresh"]
    figures["sqlite insert"] = sqlite_floor(tmp / "floor.db")
    figures["dbos fresh"] = dbos_fresh(dbos_url)
    figures["c4a hit"] = c4a_hit(c4a_url)
    for workers in WORKERS:
        figures[f"tp {workers}"] = throughput(f"{pg_url}?schema={schema}", workers)
    return figures


# --- the parent: a server, rounds, the table --------------------------------------------------


def ratios(f: dict[str, float]) -> dict[str, float]:
    best = max(f[f"tp {w}"] for w in WORKERS)
    return {
        "pg fresh call (µs)": f["pg fresh"],
        "pg INSERT + commit (µs)": f["pg insert"],
        "pg hit (µs)": f["pg hit"],
        "pg SELECT 1 (µs)": f["pg select1"],
        "pg fresh ÷ INSERT": f["pg fresh"] / f["pg insert"],
        "  its two statements alone ÷ INSERT": f["pg statements"] / f["pg insert"],
        "pg fresh vs DBOS (×)": f["dbos fresh"] / f["pg fresh"],
        "pg hit vs call4agents (×)": f["c4a hit"] / f["pg hit"],
        "pg hit ÷ SELECT 1": f["pg hit"] / f["pg select1"],
        "  its look-up alone ÷ SELECT 1": f["pg lookup"] / f["pg select1"],
        "client CPU per fresh call (µs)": f["pg cpu"],
        "sqlite fresh ÷ INSERT": f["sqlite fresh"] / f["sqlite insert"],
        **{f"calls/s, {w} workers": f[f"tp {w}"] for w in WORKERS},
        "8 workers ÷ best": f["tp 8"] / best,
    }


def _server() -> tuple[Any, str]:
    import psycopg

    sys.path.insert(0, str(ROOT))
    from tests.support.pg import LocalServer, start_server

    server = start_server()
    fsync = os.environ.get("DAR_BENCH_FSYNC", "on")
    if fsync == "on" and isinstance(server, LocalServer):  # the test server's is off
        server.stop()
        options = f"-p {server.port} -k {server.dir} -c listen_addresses=127.0.0.1"
        log = str(server.dir / "log")
        server._run("pg_ctl", "-D", str(server.data), "-l", log, "-o", options, "-w", "start")
    with psycopg.connect(server.url, autocommit=True) as conn:
        assert conn.execute("SHOW fsync").fetchone() == (fsync,), f"fsync must be {fsync}"
        for db in ("dbos_hot", "c4a_hot"):
            conn.execute(f"DROP DATABASE IF EXISTS {db}")
            conn.execute(f"CREATE DATABASE {db}")
    return server, server.url


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    trees = {"after": str(ROOT / "python")}
    if os.environ.get("DAR_BENCH_BEFORE"):
        trees = {"before": os.environ["DAR_BENCH_BEFORE"], **trees}
    server, url = _server()
    base = url.rsplit("/", 1)[0]
    seen: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    try:
        for r in range(rounds):
            for name, path in trees.items():
                env = {**os.environ, "PYTHONPATH": path}
                args = [url, f"{base}/dbos_hot", f"{base}/c4a_hot"]
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", *args],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode != 0:
                    raise SystemExit(f"{name} failed:\n{proc.stderr}")
                figures = json.loads(proc.stdout.strip().splitlines()[-1])
                seen[name].append(ratios(figures))
                print(f"round {r + 1} {name}: {json.dumps(figures)}", file=sys.stderr)
    finally:
        with contextlib.suppress(Exception):
            server.close()
    rows = list(next(iter(seen.values()))[0])
    fsync = os.environ.get("DAR_BENCH_FSYNC", "on")
    print(f"fsync {fsync}, median of {rounds} rounds (each round: {', '.join(trees)})")
    print(f"| measure | {' | '.join(trees)} |")
    print("|---|" + "---:|" * len(trees))
    for row in rows:
        cells = [statistics.median(run[row] for run in seen[name]) for name in trees]
        text = [f"{c:,.0f}" if c >= 100 else f"{c:.2f}" for c in cells]
        print(f"| {row} | {' | '.join(text)} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(*sys.argv[2:5])))
    else:
        main()
