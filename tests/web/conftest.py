"""The web page in Debian's Chromium (Playwright): a browser per session, a signed-in page per test, axe-core,
screenshots, and data sent through the real ingestion endpoints.

Needs /usr/bin/chromium (`apt-get install -y chromium`) and npm (axe-core is installed once into
~/.cache/profilestore-tests/).  Screenshots go to $PROFILESTORE_SCREENSHOTS (default: screenshots/ in the
checkout), which CI keeps.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from support import new_project

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
SCREENSHOTS = Path(
    os.environ.get("PROFILESTORE_SCREENSHOTS") or Path(__file__).resolve().parents[2] / "screenshots"
)

collect_ignore: list[str] = []
if not CHROMIUM.exists():
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
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


def sign_in(context: BrowserContext, base_url: str, secret: str) -> Page:
    """A page of `context` signed in with `secret` through the sign-in form."""
    page = context.new_page()
    page.goto(f"{base_url}/signin")
    page.get_by_label("API secret").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/users**")
    return page


def make_project(database_url: str) -> dict[str, Any]:
    """support.new_project, run in a thread: Playwright's sync API keeps an event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(new_project, database_url).result()


@pytest.fixture
def project(database_url: str) -> dict[str, Any]:
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


def check_axe(page: Page, axe_js: str) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    page.evaluate(axe_js)  # through the DevTools protocol: the page's CSP (scripts of its own only) stays on
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, json.dumps(
        [{"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"][:3]]} for v in bad],
        indent=1,
    )


@pytest.fixture
def axe(axe_js: str) -> Callable[[Page], None]:
    return lambda page: check_axe(page, axe_js)


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)


# ---- data, through the real ingestion endpoints -----------------------------------------------------------


def engage(base_url: str, records: list[dict[str, Any]]) -> None:
    data = base64.b64encode(json.dumps(records).encode()).decode()
    r = httpx.post(f"{base_url}/engage", data={"data": data}, params={"verbose": "1"}, timeout=30)
    assert r.json()["status"] == 1, r.text


def track(base_url: str, events: list[dict[str, Any]]) -> None:
    data = base64.b64encode(json.dumps(events).encode()).decode()
    r = httpx.post(f"{base_url}/track", data={"data": data}, params={"verbose": "1"}, timeout=30)
    assert r.json()["status"] == 1, r.text


def seed_users(base_url: str, token: str, n: int, *, now: float | None = None) -> list[str]:
    """n profiles u000..: $name, $email, plan (pro every third), logins, tags; $last_seen one hour apart."""
    now = now or time.time()
    ids = [f"u{i:03d}" for i in range(n)]
    records = [
        {
            "$token": token,
            "$distinct_id": d,
            "$time": now - 3600 * i,
            "$set": {
                "$name": f"User {i}",
                "$email": f"user{i}@example.com",
                "plan": "pro" if i % 3 == 0 else "free",
                "logins": i,
                "tags": ["a", "b"] if i % 2 else [],
            },
        }
        for i, d in enumerate(ids)
    ]
    for start in range(0, n, 500):
        engage(base_url, records[start : start + 500])
    return ids
