"""Fixtures of the web page's tests in Debian's Chromium (Playwright): a browser per session, a context and a
signed-in page per test, a fresh project, axe-core (web_support.py has the helpers).

Needs /usr/bin/chromium (`apt-get install -y chromium`) and npm (axe-core is installed once into
~/.cache/profilestore-tests/).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from web_support import check_axe, make_project, sign_in

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE_VERSION = "4.10.3"

collect_ignore: list[str] = []
if not CHROMIUM.exists():
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module: Playwright's sync API runs an event loop in this thread while it is open, and the rest of
    the suite (asyncio.run in tests/support.py) must not find one running."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def axe_js() -> str:
    """axe-core's browser build, from npm, cached across runs."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "profilestore-tests"
    home = cache / f"axe-core-{AXE_VERSION}"
    script = home / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        home.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--silent",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(home),
                f"axe-core@{AXE_VERSION}",
            ],
            check=True,
            timeout=300,
        )
    return script.read_text()


@pytest.fixture
def project(database_url: str) -> dict[str, Any]:
    """support.new_project, in a thread (Playwright's sync API runs an event loop in this one)."""
    return make_project(database_url)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def signed_in(context: BrowserContext, server: Any, project: dict[str, Any]) -> Page:
    """A page signed in to the test's fresh project, on the Users table."""
    return sign_in(context, server.url, project["api_secret"])


@pytest.fixture
def axe(axe_js: str) -> Callable[[Page], None]:
    return lambda page: check_axe(page, axe_js)
