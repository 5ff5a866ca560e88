"""The upload page at ``/``: served with its security headers, and used in a real browser.

The browser test starts ``python -m stolentee serve`` on the embedded default (SQLite, local
files, in-process worker, no API key so loopback is served) and drives Debian's Chromium with
Playwright: upload a logo, watch it finish, see the cutout and the shirt mockup, pick a colour.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi.testclient import TestClient

from stolentee.api.app import create_app
from tests.fakes.browser import chromium_page, require_chromium

from ..conftest import SettingsFactory
from ..removal.conftest import composite, draw_logo

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page

ASSET_TYPES = {"/web/app.js": "text/javascript", "/web/style.css": "text/css"}


# --- served files and headers (no browser) ---------------------------------------------------


def test_index_serves_the_page_with_security_headers(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "img-src 'self' data: blob:" in csp and "connect-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    html = response.text
    assert 'data-testid="upload-form"' in html
    # works offline: nothing is loaded from another origin, and no inline script or style
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", html)
    assert "<script>" not in html and "style=" not in html
    for path in ASSET_TYPES:
        assert f'"{path}"' in html


@pytest.mark.parametrize(("path", "content_type"), ASSET_TYPES.items())
def test_page_assets_load_with_their_content_type(
    client: TestClient, path: str, content_type: str
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == f"{content_type}; charset=utf-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.content
    again = client.get(path, headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304 and not again.content
    assert client.head(path).status_code == 200


def test_only_the_page_assets_are_served_under_web(client: TestClient) -> None:
    for path in ("/web/index.html", "/web/__init__.py", "/web/..%2Fapp.py", "/web/missing.js"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["errors"][0]["code"] == "not_found"


def test_cdn_domain_is_allowed_for_images(make_settings: SettingsFactory) -> None:
    settings = make_settings(storage={"r2_public_domain": "assets.example.com"})
    with TestClient(create_app(settings)) as client:
        csp = client.get("/").headers["Content-Security-Policy"]
    assert "img-src 'self' data: blob: https://assets.example.com;" in csp
    assert "connect-src 'self';" in csp


# --- in a real browser ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """``stolentee serve`` on the embedded default; yields its base URL."""
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("STOLENTEE_", "DATABASE_URL", "REDIS_URL", "R2_"))
    }
    env.update(
        {
            "STOLENTEE_DATA_DIR": str(tmp_path / "data"),
            "PORT": str(port),
            "STOLENTEE_SHUTDOWN_DRAIN_S": "0",  # no load balancer to leave: stop at once
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "stolentee", "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while process.poll() is None:
            try:
                if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)
        assert process.poll() is None, "server exited at start-up"
        yield base_url
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode(errors="replace")
        if process.returncode not in (0, -15):
            print(output)


@pytest.fixture
def page(request: pytest.FixtureRequest) -> Iterator[Page]:
    """A Chromium page whose relative URLs go to a fresh server (started after the skip checks)."""
    require_chromium()
    server: str = request.getfixturevalue("server")
    with chromium_page(server) as page:
        yield page


def test_upload_in_a_browser_shows_the_cutout_on_a_shirt(page: Page, tmp_path: Path) -> None:
    logo = tmp_path / "logo.png"
    composite(draw_logo(), (255, 255, 255)).save(logo)
    problems: list[str] = []  # script errors and CSP violations the page reports

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", on_console)
    page.set_default_timeout(15_000)
    page.goto("/")

    status = page.get_by_test_id("status")
    assert status.get_attribute("data-status") == "idle"

    # A wrong API key is sent as X-Api-Key, and the API's error is shown.
    page.get_by_test_id("api-key-toggle").click()  # opens the <details>
    page.get_by_test_id("api-key").fill("st_not_a_real_key")
    page.get_by_test_id("file-input").set_input_files(logo)
    page.get_by_test_id("submit").click()
    page.wait_for_selector('[data-testid="status"][data-status="failed"]')
    error = page.get_by_test_id("error")
    assert "unknown or revoked" in error.inner_text()
    assert page.evaluate("localStorage.getItem('stolentee.apiKey')") == "st_not_a_real_key"
    problems.clear()  # the browser logs the 403 itself

    # No key: loopback is served. Upload as a graphic and watch it finish.
    page.get_by_test_id("api-key").fill("")
    page.get_by_test_id("type-select").select_option("graphic")
    page.get_by_test_id("submit").click()
    assert error.is_hidden()
    page.wait_for_selector('[data-testid="status"][data-status="done"]', timeout=60_000)
    assert page.get_by_test_id("result").is_visible()

    for test_id in ("cutout", "mockup-cutout"):
        page.wait_for_function(
            "id => { const img = document.querySelector(`[data-testid='${id}']`);"
            " return img.complete && img.naturalWidth > 0; }",
            arg=test_id,
        )
    href = page.get_by_test_id("download").get_attribute("href")
    assert href is not None and re.fullmatch(r"/assets/cutouts/[0-9a-f]{64}\.png", href), href
    cutout = page.request.get(href)
    assert cutout.ok and cutout.headers["content-type"] == "image/png"

    shirt = page.get_by_test_id("shirt-body")
    assert shirt.get_attribute("fill") == "#ffffff"
    page.get_by_test_id("swatch-navy").click()
    assert shirt.get_attribute("fill") == "#1f3a93"
    assert page.get_by_test_id("swatch-navy").get_attribute("aria-pressed") == "true"
    page.get_by_test_id("shirt-color").fill("#2e8b57")
    assert shirt.get_attribute("fill") == "#2e8b57"
    assert problems == []
