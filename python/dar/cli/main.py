"""The `dar` command: migrate, read the log, resolve stuck calls, run the demo."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from dar import __version__
from dar.audit.chain import Broken
from dar.audit.postmortem import CallNode, anchor, call_tree, check_anchor, stats, verify
from dar.cli.runs import add_commands as add_run_commands
from dar.cli.runs import app_runtime
from dar.cli.views import add_commands as add_view_commands
from dar.core import approval
from dar.core.decide import edit_summary
from dar.core.ops import GetClaim, ListSagas, LogFilter, Op, Resolve, StoreOp
from dar.core.rows import admin_row, resolved_row
from dar.core.saga import STATES as saga_states
from dar.core.states import EventKind, event_kind
from dar.errors import DarError
from dar.records import Event
from dar.runtime.execute import drive
from dar.store import AdminStore, SQLiteStore, open_store
from dar.terminal import safe, safe_event, safe_json

DEFAULT_DB = "sqlite:///dar.db"


def _db_url(args: argparse.Namespace) -> str:
    url: str = args.db or os.environ.get("DAR_DATABASE_URL") or DEFAULT_DB
    return url


def _open(args: argparse.Namespace, *, create: bool = False) -> AdminStore:
    """The store of ``--db``. Only `dar migrate` creates a SQLite file: for every other
    command a mistyped path is an error, not a new empty database."""
    url = _db_url(args)
    if url.split(":", 1)[0].lower() == "sqlite":
        path = SQLiteStore.path_of(url)
        if path != ":memory:" and not create and not Path(path).exists():
            raise DarError(f"no database at {path} (check --db; `dar migrate` creates one)")
        folder = Path(path).parent
        if path != ":memory:" and not folder.is_dir():
            raise DarError(f"no directory {folder} for the database {path} (create it first)")
    return open_store(url, migrate=not create) if create else open_store(url)


def _parse_since(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise DarError(
            f"not an ISO date or time: {safe(text)!r} (try 2026-11-28 or 2026-11-28T09:30)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _event_json(ev: Event) -> dict[str, Any]:
    out = {name: getattr(ev, name) for name in Event.__dataclass_fields__}
    for col in ("created_at", "completed_at"):
        if out[col] is not None:
            out[col] = out[col].isoformat()
    return out


def cmd_migrate(args: argparse.Namespace, console: Console) -> int:
    store = _open(args, create=True)
    applied = store.migrate()
    store.close()
    console.print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    return 0


def cmd_events(args: argparse.Namespace, console: Console) -> int:
    since = _parse_since(args.since) if args.since else None
    store = _open(args)
    events = store.events(
        LogFilter(
            correlation_id=args.correlation_id,
            tool=args.tool,
            status=args.status,
            key=args.key,
            since=since,
            limit=args.limit,
        )
    )
    store.close()
    if args.json:
        for ev in events:
            sys.stdout.write(safe_json(_event_json(ev)) + "\n")
        return 0
    events = [safe_event(ev) for ev in events]
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
    store = _open(args)
    claim = store.get_claim(GetClaim(args.key))
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
    rows = store.events(LogFilter(key=claim.key, status=EventKind.STARTED.value))
    started = next((ev for ev in rows if ev.event_id == claim.call_event_id), None)
    event = resolved_row(claim, args.executed, output, args.reason, now, started)
    try:
        after = store.resolve(Resolve(args.key, args.executed, output, now, event, args.force))
    except ValueError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        return 1
    finally:
        store.close()
    console.print(f"{escape(args.key)}: {claim.state} -> {after.state}")
    return 0


STATUS_STYLE: dict[EventKind, str] = {
    EventKind.STARTED: "yellow",
    EventKind.EXECUTED: "green",
    EventKind.CACHED: "cyan",
    EventKind.REJECTED: "bold red",
    EventKind.FAILED: "red",
    EventKind.IN_PROGRESS: "yellow",
    EventKind.CONFLICT: "magenta",
    EventKind.INDETERMINATE: "bold yellow",
    EventKind.CANCELLED: "bold yellow",
    EventKind.APPROVAL_REQUESTED: "bold magenta",
    EventKind.APPROVED: "green",
    EventKind.DENIED: "bold red",
    EventKind.APPROVAL_USED: "green",
    EventKind.PLANNED: "cyan",
    EventKind.STALE: "magenta",
    EventKind.SAGA_STARTED: "bold blue",
    EventKind.SAGA_COMPENSATING: "bold yellow",
    EventKind.SAGA_ENDED: "bold blue",
    EventKind.RUN_STARTED: "bold blue",
    EventKind.RUN_STEP: "dim blue",
    EventKind.RUN_SUSPENDED: "bold yellow",
    EventKind.RUN_ENDED: "bold blue",
    EventKind.SPECULATED: "bold cyan",
    EventKind.RELEASED: "dim",
    EventKind.RESOLVED: "blue",
    EventKind.PURGED: "dim",
}
assert set(STATUS_STYLE) == set(EventKind), "every kind of row has its style"


def _short(value: Any, width: int = 70) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def _run_label(node: CallNode) -> Text:
    """A durable run: how it stands, then its journal, one line a step."""
    out = node.outcome
    label = Text()
    label.append(node.first.created_at.strftime("%H:%M:%S.%f")[:-3] + " ", style="dim")
    label.append(f"run {node.first.tool_name}", style="bold")
    kind = event_kind(out.status)
    label.append(" " + out.status.upper(), style="" if kind is None else STATUS_STYLE[kind])
    if out.rejection_reason and out.effect == "run":
        label.append(f"  {out.rejection_reason}", style="dim")
    for row in node.rows:
        if row.status != EventKind.RUN_STEP.value:
            continue
        response = row.output if isinstance(row.output, dict) else {}
        tokens = response.get("tokens") or 0
        spent = f", {tokens} tokens" if tokens else ""
        ms = f", {row.duration_ms:.1f} ms" if row.duration_ms is not None else ""
        label.append(
            f"\n  step {row.attempt}: {row.effect} {row.tool_name}{spent}{ms}", style="dim"
        )
    return label


def _search_label(node: CallNode) -> Text:
    """A search (`rt.speculate`): what it chose and why, then its tree, a line a node
    (``*`` marks the chosen path); the calls it tried and the commit follow nested."""
    out = node.outcome
    label = Text()
    label.append(node.first.created_at.strftime("%H:%M:%S.%f")[:-3] + " ", style="dim")
    label.append("search", style="bold")
    label.append(" SPECULATED", style=STATUS_STYLE[EventKind.SPECULATED])
    if out.rejection_reason:
        label.append(f"  {out.rejection_reason}", style="dim")
    summary = out.output if isinstance(out.output, dict) else {}
    for n in summary.get("tree", [])[1:]:
        call = n.get("call") or {}
        mark = "*" if n.get("chosen") else " "
        line = f"\n{mark} {'  ' * (n.get('depth', 1) - 1)}{call.get('tool')} "
        line += f"{_short(call.get('arguments'), 50)} {str(n.get('status')).upper()}"
        label.append(line, style="bold" if n.get("chosen") else "dim")
        figures = (
            f"visits {n.get('visits')} mean {n.get('mean', 0):.3f} best {n.get('best', 0):.3f}"
        )
        label.append("  " + figures, style="dim")
    return label


def _node_label(node: CallNode) -> Text:
    if node.first.status == EventKind.SPECULATED.value:
        return _search_label(node)
    if any(r.status == EventKind.RUN_STEP.value or r.effect == "run" for r in node.rows):
        return _run_label(node)
    out = node.outcome
    label = Text()
    label.append(node.first.created_at.strftime("%H:%M:%S.%f")[:-3] + " ", style="dim")
    label.append(out.tool_name, style="bold")
    label.append(f" ({out.effect}) ", style="dim")
    kind = event_kind(out.status)
    label.append(out.status.upper(), style="" if kind is None else STATUS_STYLE[kind])
    if node.duration_ms is not None:
        label.append(f" {node.duration_ms:.1f} ms", style="dim")
    if out.idempotency_key:
        label.append(f"  key {out.idempotency_key[:60]}", style="dim")
    if out.rejection_reason:
        who = f"[{out.rule_name}] " if out.rule_name else ""
        label.append(f"\n{who}{out.rejection_reason}", style="red")
    if out.error:
        label.append(f"\nerror: {out.error}", style="red")
    label.append(f"\nin  {_short(node.first.input)}", style="dim")
    if out.input is not None and out.input != node.first.input:  # a person's edit ran
        label.append(f"\nedit {_short(out.input)}", style="dim")
    if out.output is not None:
        label.append(f"\nout {_short(out.output)}", style="dim")
    return label


def cmd_trace(args: argparse.Namespace, console: Console) -> int:
    store = _open(args)
    events = [safe_event(ev) for ev in store.events(LogFilter(correlation_id=args.correlation_id))]
    store.close()
    if not events:
        console.print(
            f"[red]no events with correlation id {escape(safe(args.correlation_id))}[/red]"
        )
        return 1
    roots = call_tree(events)
    if args.json:
        sys.stdout.write(safe_json([r.as_dict() for r in roots], indent=2, default=str) + "\n")
        return 0
    count = sum(1 for _ in _walk(roots))
    tree = Tree(
        Text(
            f"session {safe(args.correlation_id)}: {count} calls, {len(events)} events",
            style="bold",
        )
    )

    def add(parent: Tree, nodes: list[CallNode]) -> None:
        for node in nodes:
            add(parent.add(_node_label(node)), node.children)

    add(tree, roots)
    console.print(tree)
    return 0


def _walk(nodes: list[CallNode]) -> Any:
    for node in nodes:
        yield node
        yield from _walk(node.children)


def cmd_stats(args: argparse.Namespace, console: Console) -> int:
    since = _parse_since(args.since) if args.since else None
    store = _open(args)
    events = [safe_event(ev) for ev in store.events(LogFilter(since=since))]
    store.close()
    report = stats(events)
    if args.json:
        sys.stdout.write(safe_json(report.as_dict(), indent=2) + "\n")
        return 0
    table = Table(
        title=f"{len(events)} events" + (f" since {safe(args.since)}" if args.since else "")
    )
    table.add_column("tool", no_wrap=True)
    for name in ("ran", "cached", "refused", "failed", "other"):
        table.add_column(name, justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    main_statuses = ("executed", "cached", "rejected", "failed")
    for t in report.tools:
        other = sum(n for s, n in t.statuses.items() if s not in main_statuses)
        table.add_row(
            escape(t.tool),
            *(str(t.statuses.get(s, 0)) for s in main_statuses),
            str(other),
            "" if t.p50_ms is None else f"{t.p50_ms:.1f}",
            "" if t.p99_ms is None else f"{t.p99_ms:.1f}",
        )
    console.print(table)
    dup = sum(t.duplicates_absorbed for t in report.tools)
    console.print(f"duplicates absorbed (answered from the record): [bold]{dup}[/bold]")
    if report.refusals:
        refusals = Table(title="refusals (dar trace SESSION for the whole story)")
        refusals.add_column("refused by", overflow="fold")
        refusals.add_column("count", justify="right")
        refusals.add_column("most frequent reasons", ratio=2)
        refusals.add_column("in sessions", overflow="fold", ratio=1)
        for rule_name, reasons in sorted(report.refusals.items()):
            top = "\n".join(f"{n}× {r}" for r, n in reasons.most_common(3))
            where = "\n".join(report.refusal_sessions.get(rule_name, []))
            refusals.add_row(
                escape(rule_name), str(sum(reasons.values())), escape(top), escape(where)
            )
        console.print(refusals)
    if report.failures:
        console.print("[red]failures:[/red]")
        for error, n in report.failures.most_common(5):
            console.print(f"  {n}× {escape(error)}")
    if report.indeterminate_keys:
        console.print(
            "[bold yellow]indeterminate, waiting for an operator "
            "(dar resolve KEY --executed/--not-executed):[/bold yellow]"
        )
        for key in report.indeterminate_keys:
            console.print(f"  {escape(key)}")
    return 0


def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    store = _open(args)
    events = store.events(LogFilter(correlation_id=args.correlation_id))
    heads, points = store.chain_heads(), store.checkpoints()
    claims = store.claims() if args.correlation_id is None else []
    purges = store.purge_records() if args.correlation_id is None else []
    store.close()
    report = verify(events, heads, points, only=args.correlation_id, claims=claims, purges=purges)
    if args.anchor:
        report.broken += _anchor(Path(args.anchor), heads, events, points, console)
    if args.json:
        sys.stdout.write(safe_json(report.as_dict()) + "\n")
    elif report.ok:
        console.print(
            f"[green]OK[/green]: {report.rows} events in {report.chains} chains, "
            "every hash follows from the rows before it, every claim matches the log"
        )
    else:
        console.print(
            f"[bold red]BROKEN[/bold red]: {len(report.broken)} of {report.chains} chains"
        )
        for b in report.broken:
            console.print(
                f"  {escape(safe(b.correlation_id or '(none)'))}: first broken "
                f"link at seq {b.seq} (event {escape(safe(b.event_id))}): {escape(b.reason)}"
            )
    return 0 if report.ok else 1


def _anchor(
    path: Path, heads: dict[str, str], events: list[Event], points: dict[str, str], console: Console
) -> list[Broken]:
    """Keep the heads outside the database (first run), or check the log against them."""
    if not path.exists():
        path.write_text(json.dumps(anchor(heads), indent=1, sort_keys=True) + "\n")
        console.print(
            f"anchored {len(heads)} chain heads in {escape(str(path))}: keep it elsewhere"
        )
        return []
    try:
        anchored = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DarError(f"cannot read the anchor {path}: {exc}") from exc
    return check_anchor(anchored, events, points)


def cmd_gc(args: argparse.Namespace, console: Console) -> int:
    store = _open(args)
    n = store.gc(dt.datetime.now(dt.timezone.utc).timestamp())
    store.close()
    console.print(f"removed {n} expired or released claims (the event log is untouched)")
    return 0


def cmd_purge(args: argparse.Namespace, console: Console) -> int:
    before = _parse_since(args.before)  # before opening: a typo is an error, not a purge
    if not args.yes:
        console.print(
            f"[red]purge deletes every event before {before.isoformat()}; "
            "run again with --yes to do it[/red]"
        )
        return 2
    store = _open(args)
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    event = admin_row(EventKind.PURGED, f"operator purged events before {before.isoformat()}", now)
    rows, points = store.purge(before, now, event)
    store.close()
    console.print(
        f"purged {rows} events before {before.isoformat()} from {len(points)} "
        "sessions; their chain checkpoints are recorded, so `dar verify` still "
        "checks what remains"
    )
    return 0


def _run_plan(store: AdminStore, plan: Any) -> Any:
    """Run a core plan of store operations only (approvals) against ``store``."""
    return drive(plan, lambda op: _store_op(op).apply(store))


def _store_op(op: Op) -> StoreOp:
    assert isinstance(op, StoreOp), f"{type(op).__name__} is not a store operation"
    return op


def cmd_approvals(args: argparse.Namespace, console: Console) -> int:
    store = _open(args)
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    found = _run_plan(store, approval.listing(args.status, args.correlation_id, now))
    store.close()
    if args.json:
        for a in found:
            sys.stdout.write(safe_json({**dataclasses.asdict(a), "state": a.state(now)}) + "\n")
        return 0
    table = Table(title=f"{len(found)} approval requests (dar approve ID --by NAME)")
    for col in ("id", "state", "tool", "session", "arguments", "why / decision"):
        table.add_column(col, overflow="fold")
    for a in found:
        decision = f"{a.decided_by}: {a.note or ''}" if a.decided_by else ""
        arguments = a.input or ""
        if a.edited_input is not None:
            arguments += f" edited to {a.edited_input}"
        table.add_row(
            escape(safe(a.approval_id)),
            a.state(now),
            escape(safe(a.tool_name)),
            escape(safe(a.correlation_id or "")),
            escape(safe(arguments)),
            escape(safe(" / ".join(x for x in (a.reason, decision) if x))),
        )
    console.print(table)
    return 0


def cmd_decide(args: argparse.Namespace, console: Console) -> int:
    """Decide a request. An edit (``--arguments``) is checked against the tool's schema and
    rules up front when ``--app`` builds the application's runtime; without it the edit is
    recorded as given and checked when the call uses it (a bad edit is refused then,
    running nothing)."""
    approve = args.command == "approve"
    try:
        decided = _decide_in_app(args) if args.app else _decide_in_store(args, approve)
    except KeyError as exc:
        console.print(f"[red]{escape(str(exc.args[0]))}[/red]")
        return 1
    what = "approved" if approve else "denied"
    until = ""
    if decided.expires_at is not None:
        expiry = dt.datetime.fromtimestamp(decided.expires_at, dt.timezone.utc)
        until = f" (usable once, until {expiry.isoformat(timespec='seconds')})"
    tool_input = f"{safe(decided.tool_name)} {safe(decided.input or '')}"
    if decided.edited_input is not None:
        what += " with an edit"
        tool_input += f", runs as {safe(edit_summary(decided.input, decided.edited_input))}"
    console.print(f"{what}: {escape(tool_input)}{until}")
    return 0


def _decide_in_store(args: argparse.Namespace, approve: bool) -> Any:
    store = _open(args)
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    secret = os.environ.get("DAR_APPROVAL_SECRET") or None
    note = args.note if approve else args.reason
    plan = approval.decide(
        args.approval_id, approve=approve, by=args.by, note=note, ttl=args.ttl, now=now,
        secret=secret, arguments=args.arguments,
    )  # fmt: skip
    try:
        return _run_plan(store, plan)
    finally:
        store.close()


def _decide_in_app(args: argparse.Namespace) -> Any:
    """`Runtime.approve` in the application's runtime, which has the tools and rules."""
    with app_runtime(args, _db_url) as (rt, call):
        return call(
            rt.approve(args.approval_id, args.by, args.note, args.ttl, arguments=args.arguments)
        )


def cmd_sagas(args: argparse.Namespace, console: Console) -> int:
    store = _open(args)
    if args.action == "resume":
        return _resume_sagas(args, store, console)
    groups = {"open": ("open", "compensating"), "failed": ("compensation_failed", "needs_operator")}
    wanted = groups.get(args.state or "", (args.state,) if args.state else ())
    if any(state not in saga_states for state in wanted):
        raise DarError(f"--state: open, failed, or one of {', '.join(saga_states)}")
    found = store.sagas(ListSagas(wanted))
    store.close()
    if args.json:
        for rec in found:
            sys.stdout.write(safe_json(dataclasses.asdict(rec)) + "\n")
        return 0
    table = Table(title=f"{len(found)} sagas (dar trace SESSION shows one with its calls)")
    for col in ("saga", "state", "session", "steps", "why"):
        table.add_column(col, overflow="fold")
    for rec in found:
        steps = json.loads(rec.steps)
        said = ", ".join(f"{s['tool']}:{s['status']}" for s in steps)
        table.add_row(
            escape(safe(rec.saga_id)),
            rec.state,
            escape(safe(rec.correlation_id or "")),
            escape(safe(said)),
            escape(safe(rec.error or "")),
        )
    console.print(table)
    return 0


def _resume_sagas(args: argparse.Namespace, store: AdminStore, console: Console) -> int:
    """Recovery runs the application's compensations and rules, which are code: ``--app
    module:attr`` names a function that builds its `Runtime` from a database URL."""
    store.close()
    if not args.app:
        raise DarError("dar sagas resume needs --app MODULE:FUNCTION (URL -> Runtime)")
    module, _, attr = args.app.partition(":")
    try:
        build = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise DarError(f"cannot load --app {args.app}: {exc}") from exc
    with build(_db_url(args)) as rt:
        done = rt.recover_sagas(stuck=True)
    console.print(f"resumed {len(done)} sagas: {escape(', '.join(done)) or '-'}")
    return 0


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from dar.demo.incidents import run_agent_demo, run_demo

    if args.agent:
        run_agent_demo(console)
        return 0
    run_demo(Path(args.file), console)
    return 0


def cmd_mcp_proxy(args: argparse.Namespace, console: Console) -> int:
    from dar.mcp_proxy.cli import run_proxy

    return run_proxy(args, _db_url(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dar",
        description="durable-agent-runtime: rules, idempotency and an event log for agent "
        "tool calls.",
        epilog="Database: --db URL or DAR_DATABASE_URL (default sqlite:///dar.db). "
        "After an incident: `dar stats` shows what was refused and why, and which sessions "
        "to look at; `dar trace SESSION` shows one session as a tree. "
        "Try it: `dar demo`, then `dar stats --db sqlite:///dar-demo.db`.",
    )
    parser.add_argument("--version", action="version", version=f"dar {__version__}")
    db_help = "database URL (sqlite:///file.db or postgresql://...)"
    parser.add_argument("--db", help=db_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        # Before or after the command name: SUPPRESS keeps an earlier --db when absent here.
        p.add_argument("--db", default=argparse.SUPPRESS, help=db_help)
        return p

    p = command("migrate", "create or upgrade the tables")
    p.set_defaults(fn=cmd_migrate)

    p = command("events", "read the event log (filters combine)")
    p.add_argument("--correlation-id", help="one session / conversation")
    p.add_argument("--tool", help="tool name")
    p.add_argument(
        "--status",
        choices=[k.value for k in EventKind],
        metavar="STATUS",
        help="one of: " + ", ".join(k.value for k in EventKind),
    )
    p.add_argument("--key", help="idempotency key")
    p.add_argument("--since", help="ISO date or time, UTC unless it says otherwise")
    p.add_argument("--limit", type=_count, help="at most this many rows (the oldest first)")
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
    p.add_argument(
        "--force",
        action="store_true",
        help="also decide a call whose worker still holds a live lease (know it is gone)",
    )
    p.set_defaults(fn=cmd_resolve)

    p = command("trace", "one session as a tree of calls: what ran, what was refused and why")
    p.add_argument("correlation_id", help="the session (see `dar stats` / `dar events`)")
    p.add_argument("--json", action="store_true", help="the tree as JSON")
    p.set_defaults(fn=cmd_trace)

    p = command("stats", "counts per tool and status, refusals by rule, failures, p50/p99")
    p.add_argument("--since", help="ISO date or time, UTC unless it says otherwise")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(fn=cmd_stats)

    p = command("verify", "check the hash chains: has anyone edited the log?")
    p.add_argument("correlation_id", nargs="?", help="one session (default: all)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--anchor",
        metavar="FILE",
        help="first run: write every chain's head to FILE (keep it outside the database); "
        "later runs: also check that no anchored chain was rewritten",
    )
    p.set_defaults(fn=cmd_verify)

    p = command("gc", "delete expired and released claims (never events)")
    p.set_defaults(fn=cmd_gc)

    p = command("purge", "delete old events, keeping the chains verifiable (administrators)")
    p.add_argument("--before", required=True, help="ISO date: events created before it go")
    p.add_argument("--yes", action="store_true", help="really delete")
    p.set_defaults(fn=cmd_purge)

    p = command("approvals", "calls waiting for a person, and the decisions made")
    p.add_argument("--status", choices=approval.STATES, help="pending, approved, denied, ...")
    p.add_argument("--correlation-id", help="one session / conversation")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(fn=cmd_approvals)

    p = command("approve", "approve one pending call: the same call, made again, runs once")
    p.add_argument("approval_id", help="see `dar approvals --status pending`")
    p.add_argument("--by", required=True, help="who approves (recorded in the log)")
    p.add_argument("--note", help="a note for the log")
    p.add_argument("--ttl", type=float, default=3600, help="seconds the grant stays usable")
    p.add_argument(
        "--arguments",
        metavar="JSON",
        help="approve the call edited to these arguments (a JSON object): it runs on them",
    )
    p.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="with --arguments: your Runtime (or a factory of one) checks the edit against "
        "the tool's schema and rules now, rather than when the call uses it",
    )
    p.set_defaults(fn=cmd_decide)

    p = command("deny", "refuse one pending call: that exact call is rejected with the reason")
    p.add_argument("approval_id", help="see `dar approvals --status pending`")
    p.add_argument("--by", required=True, help="who refuses (recorded in the log)")
    p.add_argument("--reason", required=True, help="why: the agent reads it")
    p.set_defaults(fn=cmd_decide, ttl=0, note=None, arguments=None, app=None)

    p = command("sagas", "sagas and their state; `dar sagas resume` finishes interrupted ones")
    p.add_argument(
        "action",
        nargs="?",
        choices=["list", "resume"],
        default="list",
        help="list (default), or resume: compensate sagas whose worker is gone",
    )
    p.add_argument("--state", help="open, failed, or one state: " + ", ".join(saga_states))
    p.add_argument(
        "--app", metavar="MODULE:FUNCTION", help="resume: builds your Runtime from a URL"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(fn=cmd_sagas)

    from dar.mcp_proxy.cli import add_proxy_arguments

    p = command("mcp-proxy", "guard any MCP server: rules, exactly-once and the log on its tools")
    add_proxy_arguments(p)
    p.set_defaults(fn=cmd_mcp_proxy)

    add_view_commands(command, _open)
    add_run_commands(command, _open, _db_url)

    p = sub.add_parser("demo", help="replay the pitch's incidents without and with dar")
    p.add_argument("--file", default="dar-demo.db", help="SQLite file to write (recreated)")
    p.add_argument(
        "--agent",
        action="store_true",
        help="the incidents through the real OpenAI SDK, against a scripted local model",
    )
    p.set_defaults(fn=cmd_demo)
    return parser


def _count(text: str) -> int:
    """An argument that counts rows: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        code: int = args.fn(args, console)
    except DarError as exc:
        console.print(f"[red]error:[/red] {escape(safe(str(exc)))}")
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
