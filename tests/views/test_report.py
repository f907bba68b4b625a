"""`dar report`: the report in a real headless browser (Debian's chromium-headless-shell,
driven by playwright; no browser is downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser

from dar.cli.main import main
from tests.support.browser import open_page
from tests.support.views_data import SCREENSHOTS as DOCS
from tests.support.views_data import SCRIPT, build


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("views-browser") / "views.db"
    build(path)
    return path


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


def test_a_search_draws_its_tree_with_the_chosen_path(tmp_path: Path, browser: Browser) -> None:
    from tests.support.couriers import World, propose, score

    db = tmp_path / "search.db"
    with World().runtime(f"sqlite:///{db}") as rt:
        found = rt.speculate("conv-1", propose=propose, score=score, budget=16)
        rt.commit_all(found.best)
    page, errors = open_page(browser, report(db, tmp_path, "conv-1").as_uri())
    search = page.locator(".call", has_text="search")
    assert search.first.get_attribute("data-status") == "speculated"
    search.first.click()
    nodes = page.locator("#search-tree li.node")
    assert nodes.count() == len(found.tree)
    chosen = page.locator("#search-tree li.chosen > .node-line .tool")
    assert chosen.all_text_contents() == [
        "start",
        "quote_couriers",
        "book_courier",
        "notify_customer",
    ]
    assert "andes" in (
        page.locator("#search-tree li.chosen > .node-line .args").nth(1).text_content() or ""
    )
    assert "visits" in (page.locator("#search-tree .figures").first.text_content() or "")
    assert page.locator('#search-tree li.node[data-status="rejected"]').count() == 1
    # For the manual's picture: the detail pane at full height, wide enough for the tree.
    page.add_style_tag(content="#panes{grid-template-columns:1fr 3fr}#detail{max-height:none}")
    page.locator("#search-tree").screenshot(path=str(DOCS / "speculate-tree.png"))
    assert errors == []
