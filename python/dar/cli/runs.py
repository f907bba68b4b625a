"""The `dar runs` commands: durable runs, one run's journal, and a worker that resumes them.

``dar runs`` lists runs; ``dar runs show SESSION`` walks one run's journal step by step;
``dar runs resume --app MODULE:ATTR`` imports the application (so its ``@dar.agent``s are
registered), takes its runtime and resumes every run that crashed or whose approval was
decided, once or, with ``--watch``, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import inspect
import json
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dar.core import runs
from dar.core.ops import GetRun, ListRuns, LogFilter, Op, StoreOp
from dar.core.states import EventKind
from dar.errors import DarError
from dar.records import RunRecord, RunResult
from dar.runtime.aio import AsyncRuntime
from dar.runtime.execute import drive
from dar.runtime.sync import Runtime
from dar.store import AdminStore
from dar.terminal import safe, safe_json

Opener = Callable[[argparse.Namespace], AdminStore]
Command = Callable[[str, str], argparse.ArgumentParser]
DbUrl = Callable[[argparse.Namespace], str]

#: A key no call has: subscribing to it says whether the store signals at all.
PROBE = "dar runs resume --watch"
#: `--watch` on a store that cannot signal: look again every this many seconds.
POLL = 1.0
#: `--watch` on a store that signals decisions (Postgres LISTEN/NOTIFY): look again at the
#: next lease to run out, and at the latest after this many seconds (for new runs).
IDLE = 10.0


def _short(value: Any, width: int = 60) -> str:
    text = safe(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))
    return text if len(text) <= width else text[: width - 1] + "…"


# --- dar runs ---------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace, console: Console, open_store: Opener) -> int:
    if args.state is not None and args.state not in runs.STATES:
        raise DarError(f"--state: one of {', '.join(runs.STATES)}")
    store = open_store(args)
    try:
        found = store.runs(ListRuns(() if args.state is None else (args.state,)))
    finally:
        store.close()
    if args.json:
        for rec in found:
            sys.stdout.write(safe_json(dataclasses.asdict(rec)) + "\n")
        return 0
    table = Table(title=f"{len(found)} durable runs (dar runs show SESSION for one)")
    table.add_column("session", overflow="fold")
    table.add_column("agent", overflow="fold")
    table.add_column("state", no_wrap=True)
    for col in ("steps", "tokens", "saved"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("error / approval", overflow="fold", ratio=1)
    for rec in found:
        table.add_row(
            escape(safe(rec.session_id)),
            escape(safe(rec.agent)),
            rec.state,
            str(rec.steps),
            str(rec.tokens),
            str(rec.tokens_saved),
            escape(safe(_why(rec))),
        )
    console.print(table)
    return 0


def _why(rec: RunRecord) -> str:
    if rec.error:
        return rec.error
    if rec.state == runs.SUSPENDED:
        return f"waits for approval {rec.approval_id}"
    if rec.state == runs.RUNNING and rec.owner:
        return f"held by {rec.owner}"
    return ""


# --- dar runs show SESSION ----------------------------------------------------------------------


def cmd_show(args: argparse.Namespace, console: Console, open_store: Opener) -> int:
    store = open_store(args)
    try:
        rec = store.get_run(GetRun(args.session))
        if rec is None:
            console.print(f"[red]no durable run with session {escape(safe(args.session))}[/red]")
            return 1
        journal = drive(runs.journal(args.session), lambda op: _store_op(op).apply(store))
        rows = store.events(LogFilter(correlation_id=args.session))
    finally:
        store.close()
    recorded: dict[int, int] = {}
    for row in rows:
        if row.status == EventKind.RUN_STEP.value and row.attempt is not None:
            recorded[row.attempt] = recorded.get(row.attempt, 0) + 1
    steps = [
        {
            "index": s.index,
            "kind": s.kind,
            "name": s.name,
            "tokens": s.tokens,
            "status": status,
            "said": said,
            "recorded": recorded.get(s.index, 1),
        }
        for s in journal.steps
        for status, said in [_status(s.kind, s.response)]
    ]
    history = [
        {"status": row.status, "said": row.rejection_reason}
        for row in rows
        if row.status in (EventKind.RUN_SUSPENDED.value, EventKind.RUN_ENDED.value)
    ]
    if args.json:
        out = {"run": dataclasses.asdict(rec), "steps": steps, "history": history}
        sys.stdout.write(safe_json(out) + "\n")
        return 0
    table = Table(
        title=f"run {safe(rec.session_id)} of {safe(rec.agent)}: {rec.state}, "
        f"{len(steps)} steps journaled"
    )
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("status", overflow="fold", ratio=1)
    for s in steps:
        times = f" (recorded {s['recorded']}×)" if s["recorded"] > 1 else ""
        said = s["said"] if len(s["said"]) <= 70 else s["said"][:69] + "…"
        separator = ": " if s["status"] in ("rejected", "failed") else " "
        table.add_row(
            str(s["index"]),
            escape(safe(s["kind"])),
            escape(safe(s["name"])),
            str(s["tokens"]),
            escape(safe(f"{s['status']}{separator if said else ''}{said}{times}")),
        )
    console.print(table)
    for h in history:
        console.print(escape(safe(f"{h['status']}: {h['said'] or ''}")))
    if rec.state == runs.SUSPENDED:
        console.print(
            escape(safe(f"now waiting: dar approve {rec.approval_id} --by NAME (or dar deny)"))
        )
    console.print(
        f"tokens spent: [bold]{rec.tokens}[/bold]; saved by replay: [bold]{rec.tokens_saved}[/bold]"
    )
    return 0


def _store_op(op: Op) -> StoreOp:
    assert isinstance(op, StoreOp), f"{type(op).__name__} is not a store operation"
    return op


def _status(kind: str, response: Any) -> tuple[str, str]:
    """What a journaled step answered: a word, and what it said (a tool's output as JSON,
    or its refusal or error; the value a `dar.step` journaled)."""
    if kind == "tool" and isinstance(response, dict):
        said = response.get("reason") or response.get("error")
        if said:
            rule = f"[{response['rule']}] " if response.get("rule") else ""
            return str(response.get("status")), f"{rule}{said}"
        return str(response.get("status")), response.get("output_json") or ""
    if kind == "model":
        return "answered", ""
    return "recorded", json.dumps(response, ensure_ascii=False, separators=(",", ":"))


# --- dar runs resume ------------------------------------------------------------------------------


def cmd_resume(args: argparse.Namespace, console: Console, db_url: DbUrl) -> int:
    with app_runtime(args, db_url) as (rt, call):
        done = call(rt.resume())
        _print(done, console)
        if not args.watch:
            console.print(f"resumed {len(done)} runs")
            return 0
        console.print("watching for decisions and crashed runs (Ctrl-C to stop)")
        try:
            while True:
                _wait(rt, call)
                _print(call(rt.resume()), console)
        except KeyboardInterrupt:
            console.print("stopped")
    return 0


def _print(done: list[RunResult], console: Console) -> None:
    for res in done:
        if res.status == runs.FINISHED:
            said = f"finished: {_short(res.output, 100)}"
        elif res.status == runs.SUSPENDED:
            said = f"suspended: waits for approval {res.approval_id}"
        elif res.status == runs.FAILED:
            said = f"failed: {res.error}"
        else:
            said = "running: another worker holds it"
        console.print(escape(safe(f"{res.session_id}: {said}")))


Call = Callable[[Any], Any]


@contextmanager
def app_runtime(args: argparse.Namespace, db_url: DbUrl) -> Iterator[tuple[Any, Call]]:
    """The application's runtime, and how to get a value out of its methods (an
    `AsyncRuntime`'s run on an event loop of this command's own, in another thread)."""
    if not args.app:
        raise DarError("dar runs resume needs --app MODULE:ATTR (a Runtime, or a factory)")
    module, _, attr = args.app.partition(":")
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise DarError(f"cannot load --app {args.app}: {exc}") from exc
    rt = found
    if not isinstance(found, (Runtime, AsyncRuntime)):
        if not callable(found):
            raise DarError(f"--app {args.app} is neither a Runtime nor a factory of one")
        rt = found(db_url(args)) if _takes_url(found) else found()
    elif args.db is not None:
        raise DarError(f"--app {args.app} is a runtime with its own database: drop --db")
    if not isinstance(rt, (Runtime, AsyncRuntime)):
        raise DarError(f"--app {args.app} returned {type(rt).__name__}, not a Runtime")
    if isinstance(rt, Runtime):
        try:
            yield rt, lambda value: value
        finally:
            rt.close()
        return
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="dar-runs", daemon=True)
    thread.start()

    def call(coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    try:
        yield rt, call
    finally:
        try:
            call(rt.close())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)


def _takes_url(factory: Callable[..., Any]) -> bool:
    """A factory with a required parameter is given the database URL (``--db``)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        for p in params
    )


def _wait(rt: Any, call: Call) -> None:
    """Until something may be due: a person decides a suspended run's call (Postgres
    LISTEN/NOTIFY: a decision notifies the call's key), a running run's lease runs out,
    or, where the store cannot signal, a second goes by."""
    now = rt.clock()
    found: list[RunRecord] = call(rt.runs())
    leases = [r.lease_until for r in found if r.state == runs.RUNNING and r.lease_until]
    waiting = {r.approval_id for r in found if r.state == runs.SUSPENDED}
    pending = {a.approval_id: a.idempotency_key for a in call(rt.approvals(status="pending"))}
    woken = threading.Event()
    stops = []
    try:
        probe = rt.store.on_change(PROBE, woken.set)
        signalled = probe is not None
        if probe is not None:
            stops.append(probe)
        for approval_id in waiting:
            key = pending.get(approval_id) if approval_id is not None else None
            stop = None if key is None else rt.store.on_change(key, woken.set)
            if stop is None:  # decided already, or nothing to listen on: look again soon
                signalled = False
                continue
            stops.append(stop)
        timeout = IDLE if signalled else POLL
        if leases:
            timeout = min(timeout, max(0.0, min(leases) - now) + 0.05)
        woken.wait(timeout)
    finally:
        for stop in stops:
            stop()


def add_commands(command: Command, open_store: Opener, db_url: DbUrl) -> None:
    db_help = "database URL (sqlite:///file.db or postgresql://...)"
    p = command("runs", "durable runs of agents: list, show one, resume")
    p.add_argument("--state", help="one state: " + ", ".join(runs.STATES))
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(fn=lambda args, console: cmd_list(args, console, open_store))
    sub = p.add_subparsers(
        dest="runs_command",
        metavar="ACTION",
        help="show SESSION, or resume --app MODULE:ATTR (none: list the runs)",
    )

    show = sub.add_parser(
        "show", help="one run's journal, step by step", description="one run's journal"
    )
    show.add_argument("--db", default=argparse.SUPPRESS, help=db_help)
    show.add_argument("session", help="the run's session id (see `dar runs`)")
    show.add_argument("--json", action="store_true", help="the run and its steps as JSON")
    show.set_defaults(fn=lambda args, console: cmd_show(args, console, open_store))

    resume = sub.add_parser(
        "resume",
        help="resume crashed runs and runs whose approval was decided",
        description="Import --app (its @dar.agent functions register), take its runtime, "
        "and resume every run that crashed or whose approval was decided.",
    )
    resume.add_argument("--db", default=argparse.SUPPRESS, help=db_help)
    resume.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="your Runtime (or AsyncRuntime), or a factory of one: called with no argument, "
        "or with the database URL (--db) when it takes one",
    )
    resume.add_argument(
        "--watch",
        action="store_true",
        help="keep resuming as decisions are made and leases run out, until Ctrl-C",
    )
    resume.set_defaults(fn=lambda args, console: cmd_resume(args, console, db_url))
