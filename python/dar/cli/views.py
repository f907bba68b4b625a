"""The `dar view`, `dar report`, `dar ui` and `dar diff` commands.

Kept apart from `dar.cli.main` so the command module stays small, and so Textual, Starlette
and uvicorn (optional extras) are imported only by the command that needs them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dar.errors import DarError
from dar.store import AdminStore
from dar.terminal import safe, safe_json
from dar.views.sessions import (
    ONLY_A,
    ONLY_B,
    SAME,
    CallView,
    DiffPair,
    diff,
    diff_counts,
    load_session,
)

Opener = Callable[[argparse.Namespace], AdminStore]
Command = Callable[[str, str], argparse.ArgumentParser]

_KIND_STYLE = {SAME: "green", ONLY_A: "yellow", ONLY_B: "yellow"}


def _short(value: Any, width: int = 60) -> str:
    text = safe(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))
    return text if len(text) <= width else text[: width - 1] + "…"


def _side(call: CallView | None) -> Text:
    if call is None:
        return Text("—", style="dim")
    text = Text(safe(call.tool), style="bold")
    text.append(f" {safe(call.status)}")
    text.append(f"\n{_short(call.input)}", style="dim")
    if call.reason or call.error:
        text.append(f"\n{safe(call.reason or call.error or '')}", style="red")
    return text


def diff_table(a: str, b: str, pairs: list[DiffPair]) -> Table:
    counts = ", ".join(f"{n} {kind}" for kind, n in diff_counts(pairs).items() if n)
    table = Table(title=Text(f"A = {safe(a)}   B = {safe(b)}   ({counts})"))
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("A", ratio=1)
    table.add_column("B", ratio=1)
    for i, pair in enumerate(pairs, 1):
        kind = Text(pair.kind, style=_KIND_STYLE.get(pair.kind, "bold red"))
        table.add_row(str(i), kind, _side(pair.a), _side(pair.b))
    return table


def cmd_diff(args: argparse.Namespace, console: Console, open_store: Opener) -> int:
    store = open_store(args)
    try:
        a, b = load_session(store, args.a), load_session(store, args.b)
    finally:
        store.close()
    pairs = diff(a, b)
    if args.json:
        out = {
            "a": args.a,
            "b": args.b,
            "counts": diff_counts(pairs),
            "pairs": [p.as_dict() for p in pairs],
        }
        sys.stdout.write(safe_json(out, indent=2, default=str) + "\n")
    else:
        console.print(diff_table(args.a, args.b, pairs))
    return 0 if all(p.kind == SAME for p in pairs) else 1


def cmd_report(args: argparse.Namespace, console: Console, open_store: Opener) -> int:
    from dar.views.report import report_html

    store = open_store(args)
    try:
        view = load_session(store, args.session)
    finally:
        store.close()
    out = Path(args.output or f"{args.session}.html")
    out.write_text(report_html(view), encoding="utf-8")
    console.print(Text(f"wrote {safe(str(out))} ({out.stat().st_size // 1024} KiB)"))
    return 0


def cmd_ui(args: argparse.Namespace, console: Console, open_store: Opener) -> int:
    require("starlette", "ui")
    require("uvicorn", "ui")
    from dar.views.webui import LOOPBACK, serve

    store = open_store(args)
    if args.host not in LOOPBACK:
        console.print(
            Text(f"warning: serving on {safe(args.host)}: anyone who reaches it reads the log")
        )
    console.print(Text(f"dar ui on http://{safe(args.host)}:{args.port}/ (Ctrl-C stops it)"))
    try:
        serve(store, args.host, args.port)
    finally:
        store.close()
    return 0


def cmd_view(args: argparse.Namespace, console: Console, open_store: Opener) -> int:
    require("textual", "view")
    from dar.views.tui import run

    store = open_store(args)
    try:
        run(store, args.session, args.follow)
    finally:
        store.close()
    return 0


def add_commands(command: Command, open_store: Opener) -> None:
    """Register the four commands on the `dar` parser."""

    def bind(fn: Callable[[argparse.Namespace, Console, Opener], int]) -> Any:
        return lambda args, console: fn(args, console, open_store)

    p = command(
        "diff",
        "compare two sessions (or a session and its replay), call by call; "
        "exit status 1 when they differ",
    )
    p.add_argument("a", help="the first session (correlation id)")
    p.add_argument("b", help="the second session")
    p.add_argument("--json", action="store_true", help="the aligned pairs as JSON")
    p.set_defaults(fn=bind(cmd_diff))

    p = command("view", "browse sessions in the terminal: calls, reasons, chain badges")
    p.add_argument("session", nargs="?", help="open this session (correlation id) first")
    p.add_argument("--follow", action="store_true", help="show new events as they are logged")
    p.set_defaults(fn=bind(cmd_view))

    p = command("report", "one session as a self-contained HTML file (no server, no CDN)")
    p.add_argument("session", help="the session (correlation id)")
    p.add_argument("-o", "--output", help="the file to write (default: SESSION.html)")
    p.set_defaults(fn=bind(cmd_report))

    p = command("ui", "a local, read-only web view of the sessions, live (Starlette + uvicorn)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (default: 8765)")
    p.set_defaults(fn=bind(cmd_ui))


def require(module: str, extra: str) -> None:
    """Fail with the install command when an optional extra is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise DarError(
            f"this command needs {module}: pip install {module} (or install "
            f"durable-agent-runtime with its [{extra}] extra)"
        )
