"""What journaling a model call in a durable run costs, and what a resumed run saves.

One model call is the real OpenAI client asking `dar.demo.scripted_model.ModelServer` on
loopback (a local stand-in: a real provider answers in hundreds of milliseconds, so the
absolute overhead below is the figure to read, not the ratio). Per store, in one run:

- ``plain``: the client alone, outside any run;
- ``journaled, live``: the same call inside a run: the call, then the run's lease moved on
  and the step's row appended (two statements in one transaction each);
- ``journaled, replayed``: a resumed run walking the same steps from the journal (no
  request is sent).

Median and p99 of N calls, in ms; N defaults to 300.

    PYTHONPATH=python:. python benches/bench_runs.py [N]
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from openai import OpenAI
from openai.types.chat import ChatCompletion
from rich.console import Console
from rich.table import Table

import dar
from dar.demo.scripted_model import ModelServer
from dar.runtime.journal import journaled

MESSAGES = [{"role": "user", "content": "where is ORD-1?"}]
TIMES: dict[str, list[float]] = {}
STOP_AT: list[int] = []


def ask(client: OpenAI, n: int) -> ChatCompletion:
    request = {"model": "m", "messages": [*MESSAGES, {"role": "user", "content": f"turn {n}"}]}

    def call() -> ChatCompletion:
        return client.chat.completions.create(**request)  # type: ignore[call-overload,no-any-return]

    def encode(r: ChatCompletion) -> tuple[Any, int]:
        return r.model_dump(mode="json"), r.usage.total_tokens if r.usage else 0

    answer: ChatCompletion = journaled(
        "model", "openai.chat.completions", request, call, encode, ChatCompletion.model_validate
    )
    return answer


@dar.agent
def talker(url: str, n: int, label: str) -> int:
    client = OpenAI(base_url=url, api_key="bench", max_retries=0)
    times = TIMES.setdefault(label, [])
    for i in range(n):
        start = time.perf_counter()
        ask(client, i)
        times.append((time.perf_counter() - start) * 1000)
        if STOP_AT and i + 1 == STOP_AT[0]:
            raise KeyboardInterrupt  # the worker "dies": the run stays for a resume
    return n


def measure(store: str, url: str, n: int) -> dict[str, list[float]]:
    TIMES.clear()
    client = OpenAI(base_url=url, api_key="bench", max_retries=0)
    plain = TIMES.setdefault("plain", [])
    for i in range(n):
        start = time.perf_counter()
        ask(client, i)  # outside a run: journaled() only calls
        plain.append((time.perf_counter() - start) * 1000)
    rt = dar.Runtime(store)
    STOP_AT[:] = [n]
    with contextlib.suppress(KeyboardInterrupt):
        rt.start(talker, f"bench-{uuid.uuid4().hex[:8]}", url, n, "journaled, live", lease=0.05)
    STOP_AT.clear()
    time.sleep(0.1)
    resumed = rt.resume()
    assert [r.status for r in resumed] == ["finished"], resumed
    # The resume walks the same n steps from the journal: its times follow the live ones.
    both = TIMES.pop("journaled, live")
    TIMES["journaled, live"], TIMES["journaled, replayed"] = both[:n], both[n:]
    rt.close()
    return dict(TIMES)


def table(title: str, series: dict[str, list[float]]) -> Table:
    t = Table(title=title)
    for col in ("path", "calls", "p50 ms", "p99 ms", "added p50 ms"):
        t.add_column(col, justify="left" if col == "path" else "right")
    base = statistics.median(series["plain"])
    for label, values in series.items():
        if not values:
            continue
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        added = "" if label == "plain" else f"{statistics.median(values) - base:+.3f}"
        t.add_row(label, str(len(values)), f"{statistics.median(values):.3f}", f"{p99:.3f}", added)
    return t


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    console = Console()
    with ModelServer(["ORD-1 is in Puno."]) as server:
        url = server.url + "/v1"
        with tempfile.TemporaryDirectory() as tmp:
            sqlite = f"sqlite:///{Path(tmp) / 'bench.db'}"
            console.print(table("SQLite file (WAL, synchronous=FULL)", measure(sqlite, url, n)))
        given = os.environ.get("DAR_BENCH_POSTGRES_URL")
        server_pg: Any = None
        if not given:
            from tests.support.pg import start_server

            server_pg = start_server()
            given = server_pg.url
        try:
            pg = f"{given}?schema=runs_{uuid.uuid4().hex[:8]}"
            console.print(table("Postgres (fsync on)", measure(pg, url, n)))
        finally:
            if server_pg is not None:
                server_pg.close()


if __name__ == "__main__":
    main()
