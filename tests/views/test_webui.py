"""`dar ui`: the web UI's read-only JSON API, and the live page in a real headless browser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.support.browser import open_page
from tests.support.views_data import SCREENSHOTS as DOCS
from tests.support.views_data import SCRIPT, build


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("views-browser") / "views.db"
    build(path)
    return path


@pytest.fixture(scope="module")
def server(db: Path) -> Iterator[str]:
    """`dar ui`'s app under uvicorn on 127.0.0.1 and a free port, in a thread."""
    import socket
    import threading
    import time

    import uvicorn

    from dar.store import open_store
    from dar.views.webui import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = open_store(f"sqlite:///{db}")
    config = uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)
    store.close()


def test_ui_api_is_read_only_json(server: str) -> None:
    import httpx

    from dar.cli.main import build_parser

    assert build_parser().parse_args(["ui"]).host == "127.0.0.1"
    with httpx.Client(base_url=server, timeout=10) as http:
        listed = http.get("/api/sessions").json()
        assert [s["session_id"] for s in listed["sessions"]][-1] == "s-1"
        s1 = next(s for s in listed["sessions"] if s["session_id"] == "s-1")
        assert (s1["refused"], s1["failed"]) == (1, 2)
        assert [
            s["session_id"] for s in http.get("/api/sessions?tool=flaky").json()["sessions"]
        ] == ["s-1"]
        view = http.get("/api/sessions/s-1").json()
        assert view["calls"][0]["input"] == {"town": SCRIPT} and view["chain"]["ok"]
        assert http.get("/api/sessions/s-t").json()["chain"]["ok"] is False
        assert http.get("/api/sessions/nope").status_code == 404
        assert http.get("/api/diff", params={"a": "a", "b": "b"}).json()["counts"]["same"] == 1
        for path in ("/", "/api/sessions", "/api/sessions/s-1"):
            assert http.post(path).status_code == 405
            assert http.delete(path).status_code == 405
        page = http.get("/")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        # a page elsewhere reaching the loopback server by another name is refused
        assert http.get("/api/sessions", headers={"Host": "evil.example"}).status_code == 400


def test_ui_in_the_browser_live(db: Path, server: str, browser: Browser) -> None:
    from tests.support.views_data import runtime

    page, errors = open_page(browser, server + "/")
    rows = page.locator("tr.session-row")
    rows.first.wait_for()
    ids = [rows.nth(i).get_attribute("data-session") for i in range(rows.count())]
    assert ids == ["s-t", "b", "a", "s-1"]
    assert rows.nth(3).locator("td.hot").count() == 2  # refused 1, failed 2
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "ui-sessions.png"))
    page.locator("tr.session-row[data-session='s-1']").click()
    page.locator(".call").first.wait_for()
    assert page.locator(".call").count() == 11
    assert page.locator("#chain").text_content() == "chain verified"
    page.locator(".call").nth(0).click()
    assert SCRIPT in (page.locator("#detail pre.input").text_content() or "")
    assert page.evaluate("typeof window.pwned") == "undefined"
    page.locator(".call").nth(3).click()
    page.screenshot(path=str(DOCS / "ui.png"))
    # live: a new call in the session shows up without a reload
    with runtime(db) as rt:
        rt.call("lookup", {"town": "Live"}, correlation_id="s-1")
    expect(page.locator(".call")).to_have_count(12, timeout=10_000)
    # the diff view
    page.goto(server + "/#/diff/a/b")
    page.locator("#diff-table tbody tr").first.wait_for()
    kinds = page.locator("#diff-table tbody tr").evaluate_all("rs => rs.map(r => r.dataset.kind)")
    assert kinds == ["same", "different input", "different status"]
    assert errors == []
