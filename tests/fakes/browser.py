"""Debian's Chromium driven by Playwright, for the pages' browser tests (no browser download)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling Google's hosts, which this
# closed network refuses (see .library/env/machines/python-svc.md).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    """Skip, with the reason, where Playwright or Debian's Chromium is missing."""
    pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed (dev extra)"
    )
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)")


@contextmanager
def chromium_page(base_url: str, *, viewport: dict[str, int] | None = None) -> Iterator[Page]:
    """A fresh page whose relative URLs go to ``base_url`` (call :func:`require_chromium`
    first, before starting the server it talks to)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(base_url=base_url, viewport=viewport)  # type: ignore[arg-type]
            yield context.new_page()
            context.close()
        finally:
            browser.close()
