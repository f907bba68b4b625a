"""Opening pages in Debian's chromium-headless-shell (no browser is downloaded)."""

from __future__ import annotations

from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium-headless-shell"


def open_page(browser: Browser, address: str) -> tuple[Page, list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 820})
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(address)
    return page, errors
