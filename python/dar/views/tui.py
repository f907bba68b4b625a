"""`dar view`: move through sessions in the terminal, open a call, see why.

A Textual app over the session model of `dar.views.sessions` (the report and the web UI show the
same). Everything from the log reaches the screen as `rich.text.Text` built from
`dar.terminal.safe` text, never as markup, so neither Rich markup nor a terminal escape
sequence in a tool input can change what the screen shows.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from dar.core.ops import LogFilter
from dar.store import AdminStore
from dar.store.sql import SessionFilter
from dar.terminal import safe
from dar.views.sessions import CallView, SessionSummary, SessionView, list_sessions, load_session

STYLE = {
    "executed": "green",
    "cached": "cyan",
    "rejected": "bold red",
    "denied": "bold red",
    "failed": "red",
    "indeterminate": "bold yellow",
    "cancelled": "yellow",
    "approval_requested": "magenta",
    "approved": "green",
}
BADGE = {"verified": "green", "broken": "bold white on red", "unverified": "yellow"}
BAR_WIDTH = 24
FOLLOW_SECONDS = 1.0


def _json(value: Any) -> str:
    return safe(json.dumps(value, ensure_ascii=False, indent=2, default=str)).replace("\\x0a", "\n")


def bar(call: CallView, span: float) -> Text:
    """Where the call ran within the session, as a bar of block characters."""
    if span <= 0:
        return Text("▏", style="blue")
    start = min(int(call.offset_ms / span * BAR_WIDTH), BAR_WIDTH - 1)
    length = max(1, round((call.duration_ms or 0.0) / span * BAR_WIDTH))
    return Text(" " * start + "█" * min(length, BAR_WIDTH - start), style="blue")


def matches(call: CallView, words: list[str]) -> bool:
    parts = (call.tool, call.status, json.dumps(call.input, default=str), call.reason, call.error)
    text = " ".join(p or "" for p in parts).lower()
    return all(w in text for w in words)


def detail(call: CallView) -> RenderableType:
    """The detail pane of one call: what a person asks first, then the rows."""
    head = Text(safe(call.tool) + " ", style="bold")
    head.append(call.status, style=STYLE.get(call.status, ""))
    head.append("  ")
    head.append(call.badge, style=BADGE[call.badge])
    lines: list[RenderableType] = [head]
    for name, value in (
        ("call", call.call_id),
        ("effect", call.effect),
        ("started", call.started_at),
        ("duration", None if call.duration_ms is None else f"{call.duration_ms:.1f} ms"),
        ("key", call.key),
        ("attempts", call.attempts or None),
        ("rule", call.rule),
        ("reason", call.reason),
        ("error", call.error),
    ):
        if value is not None:
            line = Text(f"{name:>9} ", style="dim")
            line.append(safe(str(value)), style="red" if name in ("reason", "error") else "")
            lines.append(line)
    lines += [Text("input", style="bold"), Text(_json(call.input))]
    if call.output is not None:
        lines += [Text("output", style="bold"), Text(_json(call.output))]
    if call.origin is not None:
        o = call.origin
        lines.append(Text("answered from the executed row", style="bold"))
        where = f"seq {o.seq}, session {o.session_id}, call {o.call_id}, {o.at}"
        lines += [Text(safe(where)), Text(_json(o.output))]
    lines.append(Text("rows", style="bold"))
    for r in call.rows:
        row = Text(f"{r.seq:>7} {r.at[11:23]} ")
        row.append(f"{r.status:<19}", style=STYLE.get(r.status, ""))
        row.append(r.badge, style=BADGE[r.badge])
        why = r.reason or r.error or r.note
        if why:
            row.append(" " + safe(why), style="dim")
        lines.append(row)
    return Group(*lines)


class SessionScreen(Screen[None]):
    """One session: its calls (tree order, with timeline bars) and the selected call."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "sessions"),
        Binding("slash", "focus_filter", "filter"),
        Binding("f", "toggle_follow", "follow"),
        Binding("r", "reload", "reload"),
    ]

    def __init__(self, store: AdminStore, session_id: str, follow: bool) -> None:
        super().__init__()
        self.store, self.session_id, self.follow = store, session_id, follow
        self.view: SessionView | None = None
        self.shown: list[CallView] = []
        self.current: CallView | None = None  # the call in the detail pane
        self.version = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="summary")
        yield Input(placeholder="filter calls: tool, status, input text (Enter)", id="call-filter")
        with Horizontal():
            yield DataTable(id="calls", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="detail-box"):
                yield Static("select a call", id="detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#calls", DataTable)
        table.add_columns("call", "status", "chain", "ms", "timeline")
        self.load()
        self.set_interval(FOLLOW_SECONDS, self.poll)
        table.focus()

    def load(self) -> None:
        self.version = self.store.chain_heads(self.session_id).get(self.session_id, "")
        self.view = load_session(self.store, self.session_id)
        self.title, self.sub_title = f"session {safe(self.session_id)}", ""
        self.summarize()
        self.fill()

    def summarize(self) -> None:
        assert self.view is not None
        v = self.view
        text = Text(safe(v.session_id) + "  ", style="bold")
        text.append(
            "chain verified" if v.chain_ok else "chain BROKEN",
            style="green" if v.chain_ok else "bold white on red",
        )
        text.append(f"  {v.events} events, {len(list(v.walk()))} calls  ")
        text.append(", ".join(f"{n} {s}" for s, n in v.counts().items()), style="dim")
        text.append("  following" if self.follow else "", style="bold cyan")
        self.query_one("#summary", Static).update(text)

    def fill(self) -> None:
        assert self.view is not None
        words = self.query_one("#call-filter", Input).value.lower().split()
        table = self.query_one("#calls", DataTable)
        row = table.cursor_row
        table.clear()
        self.shown = [c for c in self.view.walk() if matches(c, words)]
        for call in self.shown:
            name = call.label
            ms = "" if call.duration_ms is None else f"{call.duration_ms:.1f}"
            table.add_row(
                Text("  " * call.depth + safe(name)),
                Text(call.status, style=STYLE.get(call.status, "")),
                Text(call.badge, style=BADGE[call.badge]),
                Text(ms, justify="right"),
                bar(call, self.view.span_ms),
            )
        if self.shown:
            table.move_cursor(row=min(row, len(self.shown) - 1))
            self.show(min(row, len(self.shown) - 1))

    def show(self, index: int) -> None:
        if 0 <= index < len(self.shown):
            self.current = self.shown[index]
            self.query_one("#detail", Static).update(detail(self.current))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show(event.cursor_row)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.fill()
        self.query_one("#calls", DataTable).focus()

    def poll(self) -> None:
        if not self.follow:
            return
        if self.store.chain_heads(self.session_id).get(self.session_id, "") != self.version:
            self.load()

    def action_focus_filter(self) -> None:
        self.query_one("#call-filter", Input).focus()

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow
        self.summarize()

    def action_reload(self) -> None:
        self.load()


class DarView(App[None]):
    """The sessions list; Enter opens one."""

    TITLE = "dar view"
    CSS = """
    #summary { height: auto; padding: 0 1; }
    #calls { width: 3fr; }
    #detail-box { width: 2fr; border-left: solid $primary; padding: 0 1; }
    #sessions { height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("slash", "focus_filter", "filter"),
        Binding("question_mark", "help", "keys"),
    ]

    def __init__(self, store: AdminStore, session: str | None = None, follow: bool = False):
        super().__init__()
        self.store, self.start_session, self.follow = store, session, follow
        self.rows: list[SessionSummary] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            placeholder="filter sessions: text, tool:NAME, status:STATUS (Enter)", id="filter"
        )
        yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#sessions", DataTable)
        table.add_columns("session", "last activity (UTC)", "events", "refused", "failed", "indet.")
        self.refresh_sessions()
        table.focus()
        if self.start_session is not None:
            self.open(self.start_session)

    def session_filter(self) -> SessionFilter:
        text, tool, status = [], None, None
        for word in self.query_one("#filter", Input).value.split():
            if word.startswith("tool:"):
                tool = word[5:]
            elif word.startswith("status:"):
                status = word[7:]
            else:
                text.append(word)
        return SessionFilter(text=" ".join(text) or None, tool=tool, status=status, limit=1000)

    def refresh_sessions(self) -> None:
        table = self.query_one("#sessions", DataTable)
        table.clear()
        self.rows = list_sessions(self.store, self.session_filter())
        for s in self.rows:
            counts = [
                Text(str(n), style="bold red" if n else "dim", justify="right")
                for n in (s.refused, s.failed, s.indeterminate)
            ]
            when = (s.last_at or "")[:19].replace("T", " ")
            table.add_row(
                Text(safe(s.session_id)), when, Text(str(s.events), justify="right"), *counts
            )
        self.sub_title = f"{len(self.rows)} sessions, newest first"

    def open(self, session_id: str) -> None:
        if not self.store.events(LogFilter(correlation_id=session_id, limit=1)):
            self.notify(f"no session {safe(session_id)!r}", severity="error")
            return
        self.push_screen(SessionScreen(self.store, session_id, self.follow))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.refresh_sessions()
            self.query_one("#sessions", DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "sessions" and 0 <= event.cursor_row < len(self.rows):
            self.open(self.rows[event.cursor_row].session_id)

    def action_focus_filter(self) -> None:
        if isinstance(self.screen, SessionScreen):
            self.screen.action_focus_filter()
        else:
            self.query_one("#filter", Input).focus()

    def action_help(self) -> None:
        self.notify(
            "Enter: open   ↑/↓: move   /: filter   Esc: back   f: follow new events   "
            "r: reload   q: quit",
            title="keys",
            timeout=8,
        )


def run(store: AdminStore, session: str | None, follow: bool) -> None:
    DarView(store, session, follow).run()
