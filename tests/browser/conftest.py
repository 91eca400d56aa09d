"""Browser fixtures: the real app served by uvicorn on a free port, and Debian's Chromium driven by Playwright.

``live_server`` starts ``create_app`` against the test's database in a background thread and yields its base URL;
``browser`` launches ``/usr/bin/chromium`` headless (Playwright's own browsers are never downloaded: the tests skip
when Chromium is absent; ``./dev setup`` installs Debian's ``chromium`` package); ``page`` is a fresh page (its own
cookies) of that browser.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(db, settings) -> Iterator[str]:
    """The whole app (API and console) on http://127.0.0.1:<free port>, stopped after the test."""
    import uvicorn

    from bastion.api.app import create_app

    app = create_app(db, settings)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the live server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")  # closed before the next module's tests, which may use asyncio themselves
def browser():  # noqa: ANN201 - playwright's Browser
    """Headless Debian Chromium (never a downloaded one); skipped when /usr/bin/chromium is missing."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (./dev setup installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright package")
    with sync_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):  # noqa: ANN001, ANN201 - playwright objects
    """A fresh browser context (no cookies) and page; closed after the test."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()
