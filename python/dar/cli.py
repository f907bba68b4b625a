"""The `dar` command: migrate, read the log, resolve stuck calls, run the demo."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dar import __version__
from dar.decide import new_id
from dar.errors import DarError
from dar.records import Event, NewEvent
from dar.stores import open_store

DEFAULT_DB = "sqlite:///dar.db"


def _db_url(args: argparse.Namespace) -> str:
    url: str = args.db or os.environ.get("DAR_DATABASE_URL") or DEFAULT_DB
    return url


def _parse_since(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _event_json(ev: Event) -> dict[str, Any]:
    out = {name: getattr(ev, name) for name in Event.__dataclass_fields__}
    for col in ("created_at", "completed_at"):
        if out[col] is not None:
            out[col] = out[col].isoformat()
    return out


def cmd_migrate(args: argparse.Namespace, console: Console) -> int:
    store = open_store(_db_url(args), migrate=False)
    applied = store.migrate()
    store.close()
    console.print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    return 0


def cmd_events(args: argparse.Namespace, console: Console) -> int:
    store = open_store(_db_url(args))
    events = store.events(
        correlation_id=args.correlation_id,
        tool=args.tool,
        status=args.status,
        key=args.key,
        since=_parse_since(args.since) if args.since else None,
        limit=args.limit,
    )
    store.close()
    if args.json:
        for ev in events:
            sys.stdout.write(json.dumps(_event_json(ev), ensure_ascii=False) + "\n")
        return 0
    table = Table(title=f"{len(events)} events (--json for every column)")
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("tool", no_wrap=True, overflow="ellipsis", max_width=20)
    table.add_column("status", no_wrap=True)
    table.add_column("reason / error / key", ratio=1)
    for ev in events:
        if ev.rejection_reason or ev.error:
            detail = (f"[{ev.rule_name}] " if ev.rule_name else "") + (
                ev.rejection_reason or ev.error or ""
            )
        else:
            detail = ev.idempotency_key or ""
        table.add_row(
            str(ev.seq),
            ev.created_at.strftime("%m-%d %H:%M:%S"),
            escape(ev.tool_name),
            ev.status,
            escape(detail),
        )
    console.print(table)
    return 0


def cmd_resolve(args: argparse.Namespace, console: Console) -> int:
    store = open_store(_db_url(args))
    claim = store.get_claim(args.key)
    if claim is None:
        console.print(f"[red]no claim with key {escape(repr(args.key))}[/red]")
        return 1
    output = None
    if args.executed:
        try:
            from dar._core import canonical_json_from_text

            output = canonical_json_from_text(args.output).decode()
        except DarError as exc:
            console.print(f"[red]--output is not valid JSON: {escape(str(exc))}[/red]")
            return 2
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    event = NewEvent(
        event_id=new_id(),
        tool_name=claim.tool_name,
        effect="",
        status="resolved",
        created_at=now,
        idempotency_key=args.key,
        input_hash=claim.input_hash,
        output=output,
        rejection_reason=f"operator: {'executed' if args.executed else 'not executed'}"
        + (f" ({args.reason})" if args.reason else ""),
        attempt=claim.attempts,
    )
    try:
        after = store.resolve(args.key, args.executed, output, now, event)
    except ValueError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        return 1
    finally:
        store.close()
    console.print(f"{escape(args.key)}: {claim.state} -> {after.state}")
    return 0


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from dar.demo import run_demo

    run_demo(Path(args.file), console)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dar",
        description="durable-agent-runtime: rules, idempotency and an event log for agent "
        "tool calls.",
        epilog="Database: --db URL or DAR_DATABASE_URL (default sqlite:///dar.db). "
        "Start with `dar demo`, then `dar events --db sqlite:///dar-demo.db`.",
    )
    parser.add_argument("--version", action="version", version=f"dar {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--db", help="database URL (sqlite:///file.db or postgresql://...)")
        return p

    p = command("migrate", "create or upgrade the tables")
    p.set_defaults(fn=cmd_migrate)

    p = command("events", "read the event log (filters combine)")
    p.add_argument("--correlation-id", help="one session / conversation")
    p.add_argument("--tool", help="tool name")
    p.add_argument("--status", help="executed, cached, rejected, failed, ...")
    p.add_argument("--key", help="idempotency key")
    p.add_argument("--since", help="ISO date or time, UTC unless it says otherwise")
    p.add_argument("--limit", type=int)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(fn=cmd_events)

    p = command("resolve", "decide a call left indeterminate by a crash")
    p.add_argument("key", help="the idempotency key (see `dar events --status indeterminate`)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--executed", action="store_true", help="the effect happened")
    group.add_argument(
        "--not-executed",
        action="store_true",
        help="the effect did not happen; the next call runs it",
    )
    p.add_argument("--output", default="null", help="recorded output, as JSON (with --executed)")
    p.add_argument("--reason", help="a note for the log")
    p.set_defaults(fn=cmd_resolve)

    p = sub.add_parser("demo", help="replay three real incidents without and with dar")
    p.add_argument("--file", default="dar-demo.db", help="SQLite file to write (recreated)")
    p.set_defaults(fn=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        code: int = args.fn(args, console)
    except DarError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
