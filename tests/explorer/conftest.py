"""Headless Chromium for the explorer's tests, driven by Playwright.

Playwright (a PyPI package whose driver ships inside the wheel) launches the system's Chromium
(Debian's ``chromium``: ``apt-get install -y chromium``) by its path; it downloads no browser of its
own. It was chosen over Selenium because it needs no separately versioned chromedriver, and gives the
DOM, console messages and screenshots from one synchronous API. Tests skip, saying why, where Chromium
or Playwright is absent.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "node" / "explorer"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome")
# The flags the explorer's tests run Chromium with: nothing leaves 127.0.0.1 (no component updates, sync,
# background networking or QUIC probes), a fresh profile per browser.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module. Not per session: Playwright's sync API keeps an event loop running
    while it is open, and later tests that call ``asyncio.run`` would fail under it."""
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium on this machine (apt-get install -y chromium): the browser verifier is not tested")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]'): the browser verifier is not tested")
    profile = tempfile.mkdtemp(prefix="rantai-chromium-")
    with sync_playwright() as p:
        # A persistent context is how Playwright takes a --user-data-dir: a fresh, empty one.
        context = p.chromium.launch_persistent_context(profile, executable_path=path, headless=True, args=FLAGS)
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


class _Static(http.server.SimpleHTTPRequestHandler):
    """``/explorer/...`` from node/explorer, anything else from the checkout (tests/vectors, the runner)."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json"}

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        if path.startswith("/explorer/"):
            return str(ASSETS / path[len("/explorer/"):])
        return str(ROOT / path.lstrip("/"))

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def static_url() -> Iterator[str]:
    """A loopback server of the explorer's assets and tests/ (a secure context: WebCrypto works there)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Static, directory=str(ROOT)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def page(browser, static_url):
    """A blank page of the static server, for the modules that import the verifier's ES modules into it
    (the vectors and the EPCIS-rules differential tests): one per module."""
    page = browser.new_page()
    page.goto(f"{static_url}/tests/vectors/README.md")
    yield page
    page.close()
