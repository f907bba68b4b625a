"""The report and the web UI in a real headless browser (Debian's chromium-headless-shell,
driven by playwright; no browser is downloaded)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from dar.cli.main import main

from tests.support.views_data import SCREENSHOTS as DOCS
from tests.support.views_data import SCRIPT, build

CHROMIUM = "/usr/bin/chromium-headless-shell"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("views-browser") / "views.db"
    build(path)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def open_page(browser: Browser, address: str) -> tuple[Page, list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 820})
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(address)
    return page, errors


def report(db: Path, tmp_path: Path, session: str) -> Path:
    out = tmp_path / f"{session}.html"
    assert main(["report", session, "--db", f"sqlite:///{db}", "-o", str(out)]) == 0
    return out


def test_report_in_the_browser(db: Path, tmp_path: Path, browser: Browser) -> None:
    path = report(db, tmp_path, "s-1")
    text = path.read_text()
    assert "<script>window" not in text and "http://" not in text and "https://" not in text
    page, errors = open_page(browser, path.as_uri())
    calls = page.locator(".call")
    assert calls.count() == 11
    statuses = [calls.nth(i).get_attribute("data-status") for i in range(calls.count())]
    assert statuses[:5] == ["executed", "executed", "cached", "rejected", "failed"]
    assert "saga_ended" in statuses and "approved" in statuses
    assert page.locator("#chain").text_content() == "chain verified"
    assert page.locator(".call .badge.verified").count() == 11
    assert "[no_yunguyo] no courier covers Yunguyo" in (calls.nth(3).text_content() or "")
    # the attacker's input is text on the page, and never ran
    calls.nth(0).click()
    assert SCRIPT in (page.locator("#detail pre.input").text_content() or "")
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("#detail script, #detail img").count() == 0
    # a cached answer names the executed row it came from
    calls.nth(2).click()
    assert "answered from the executed row" in (page.locator("#detail").text_content() or "")
    assert '"sent": "A"' in (page.locator("#detail").text_content() or "")
    # filtering
    page.fill("#call-filter", "rejected")
    assert page.locator(".call:not([hidden])").count() == 1
    page.fill("#call-filter", "")
    calls.nth(3).click()
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "report.png"))
    assert errors == []


def test_a_tampered_row_turns_red(db: Path, tmp_path: Path, browser: Browser) -> None:
    page, errors = open_page(browser, report(db, tmp_path, "s-t").as_uri())
    assert page.locator("#chain").text_content() == "chain BROKEN"
    first = page.locator(".call").first
    badge = first.locator(".badge")
    assert badge.text_content() == "broken"
    red = badge.evaluate("b => getComputedStyle(b).backgroundColor")
    assert red == "rgb(207, 34, 46)"
    first.click()
    assert "content or order changed" in (page.locator("#detail").text_content() or "")
    assert page.locator(".call .badge.unverified").count() == 2
    assert errors == []


# --- dar ui -----------------------------------------------------------------------------------


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
