"""`dar view`: the terminal UI, driven by Textual's pilot."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from dar.store import open_store
from tests.support.views_data import SCREENSHOTS as SHOTS
from tests.support.views_data import build


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("views") / "views.db"
    build(path)
    return path


def url(db: Path) -> str:
    return f"sqlite:///{db}"


def test_view_pilot(tmp_path: Path) -> None:
    import asyncio

    from rich.console import Console
    from textual.widgets import DataTable, Input

    from dar.views.tui import DarView, SessionScreen, detail

    def pane(screen: SessionScreen) -> str:
        """The detail pane as plain text."""
        assert screen.current is not None
        console = Console(width=120, record=True, file=io.StringIO())
        console.print(detail(screen.current))
        return console.export_text()

    from tests.support.views_data import runtime

    db = tmp_path / "tui.db"
    build(db)
    store = open_store(url(db))

    async def drive() -> None:
        app = DarView(store, follow=True)
        async with app.run_test(size=(150, 40)) as pilot:
            sessions = app.query_one("#sessions", DataTable)
            assert sessions.row_count == 4
            await pilot.press("slash", *"s-", "enter")  # filter the sessions
            assert sessions.row_count == 2
            await pilot.press("down", "enter")  # s-t, s-1: open s-1
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, SessionScreen) and screen.session_id == "s-1"
            calls = screen.query_one("#calls", DataTable)
            assert calls.row_count == 11
            await pilot.press("down", "down")  # the cached call
            shown = pane(screen)
            assert "answered from the executed row" in shown and '"sent": "A"' in shown
            await pilot.press("down")
            assert "no courier covers Yunguyo" in pane(screen)
            app.save_screenshot("view.svg", str(SHOTS))
            await pilot.press("slash", *"failed", "enter")  # filter the calls
            assert calls.row_count == 2
            screen.query_one("#call-filter", Input).value = ""
            await pilot.press("slash", "enter")
            assert calls.row_count == 11
            with runtime(db) as rt:  # follow: a new call appears
                rt.call("lookup", {"town": "new"}, correlation_id="s-1")
            for _ in range(40):
                await pilot.pause(0.1)
                if calls.row_count == 12:
                    break
            assert calls.row_count == 12
            await pilot.press("escape")
            assert app.query_one("#sessions", DataTable).row_count == 2
            await pilot.press("question_mark", "q")

    try:
        asyncio.run(asyncio.wait_for(drive(), timeout=60))
    finally:
        store.close()
