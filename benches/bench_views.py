"""How fast the views open: a 10,000-event session in `dar report` and `dar ui`, and the
sessions list over a log of 1,000,000 events, on SQLite.

The big session is made by the runtime itself (chained rows, verified like any other); the
million rows of the sessions-list benchmark are inserted with plain SQL (they are not
chained: the list only aggregates them). Prints the figures; not a test.

    PYTHONPATH=python python benches/bench_views.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dar import Effect, Runtime, tool
from dar.store import open_store
from dar.store.sql import SessionFilter
from dar.views.report import report_html
from dar.views.sessions import list_sessions, load_session

CHROMIUM = "/usr/bin/chromium-headless-shell"


@tool(effect=Effect.MUTATE_EXTERNAL)
def send(n: int, text: str) -> dict[str, int]:
    return {"sent": n}


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """The best of ``repeat`` runs, in milliseconds, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, (time.perf_counter() - t0) * 1000)
    return best, result


def big_session(db: Path, events: int) -> None:
    with Runtime(f"sqlite:///{db}", tools=[send]) as rt:
        for n in range(events // 2):  # started + executed per call
            rt.call("send", {"n": n, "text": f"message <b>{n}</b>"}, correlation_id="big")


def serve(db: Path) -> tuple[str, Any, Any]:
    import uvicorn

    from dar.views.webui import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = open_store(f"sqlite:///{db}")
    config = uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, store


def browser_render(address: str, calls: int) -> float:
    """Milliseconds from navigation until every call row is in the page."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        t0 = time.perf_counter()
        page.goto(address)
        expect(page.locator(".call")).to_have_count(calls, timeout=60_000)
        took = (time.perf_counter() - t0) * 1000
        browser.close()
    return took


def bench_session(folder: Path, events: int) -> None:
    db = folder / "big.db"
    t0 = time.perf_counter()
    big_session(db, events)
    print(f"made a session of {events} events in {time.perf_counter() - t0:.1f} s")
    store = open_store(f"sqlite:///{db}")
    load_ms, view = timed(lambda: load_session(store, "big"))
    html_ms, text = timed(lambda: report_html(view))
    store.close()
    calls = len(list(view.walk()))
    out = folder / "big.html"
    out.write_text(text)
    print(f"  load + verify the session ({calls} calls):  {load_ms:8.1f} ms")
    print(f"  report HTML ({len(text) // 1024} KiB):               {html_ms:8.1f} ms")
    print(
        f"  report in the browser, all rows rendered: {browser_render(out.as_uri(), calls):8.1f} ms"
    )

    import httpx

    address, server, ui_store = serve(db)
    try:
        with httpx.Client(base_url=address, timeout=60) as http:
            api_ms, _ = timed(lambda: http.get("/api/sessions/big").raise_for_status())
        print(f"  ui: GET /api/sessions/big:                {api_ms:8.1f} ms")
        ui_ms = browser_render(address + "/#/s/big", calls)
        print(f"  ui in the browser, all rows rendered:     {ui_ms:8.1f} ms")
    finally:
        server.should_exit = True
        ui_store.close()


def many_rows(db: Path, rows: int, per_session: int) -> None:
    """``rows`` plain rows in sessions of ``per_session``, inserted directly."""
    open_store(f"sqlite:///{db}").close()  # the schema
    conn = sqlite3.connect(db)
    statuses = ["started", "executed"] * 8 + ["rejected", "failed", "cached", "indeterminate"]
    start = time.time() - rows / 1000
    batch = []
    for i in range(rows):
        status = statuses[i % len(statuses)]
        batch.append(
            (
                f"e{i}",
                f"k{i // 2}",
                f"tool{i % 7}",
                "read",
                status,
                f"sess-{i // per_session}",
                start + i / 1000,
            )
        )
        if len(batch) == 50_000:
            conn.executemany(
                "INSERT INTO agent_tool_events (event_id, idempotency_key, tool_name, effect,"
                " status, correlation_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                batch,
            )
            batch.clear()
    conn.commit()
    conn.close()


def bench_list(folder: Path, rows: int) -> None:
    db = folder / "million.db"
    t0 = time.perf_counter()
    many_rows(db, rows, per_session=100)
    print(f"inserted {rows} rows ({rows // 100} sessions) in {time.perf_counter() - t0:.1f} s")
    store = open_store(f"sqlite:///{db}")
    for label, flt in (
        ("newest 200 sessions", SessionFilter()),
        ("sessions with tool6", SessionFilter(tool="tool6")),
        ("sessions with a failure", SessionFilter(status="failed")),
        ("session id contains '77'", SessionFilter(text="77")),
    ):
        ms, found = timed(lambda flt=flt: list_sessions(store, flt))
        print(f"  sessions list, {label:<26} {ms:8.1f} ms ({len(found)} shown)")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="events in the big session")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for the sessions list")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_session(Path(tmp), args.events)
        bench_list(Path(tmp), args.rows)


if __name__ == "__main__":
    main()
