"""Helpers of the web page's tests: a fresh project, signing in, axe-core, screenshots, and data sent through
the real ingestion endpoints.  Screenshots go to $PROFILESTORE_SCREENSHOTS (default: screenshots/ in the
checkout), which CI keeps."""

from __future__ import annotations

import base64
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import BrowserContext, Page

from support import new_project

SCREENSHOTS = Path(
    os.environ.get("PROFILESTORE_SCREENSHOTS") or Path(__file__).resolve().parents[2] / "screenshots"
)


def make_project(database_url: str) -> dict[str, Any]:
    """support.new_project, run in a thread: Playwright's sync API keeps an event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(new_project, database_url).result()


def sign_in(context: BrowserContext, base_url: str, secret: str) -> Page:
    """A page of `context` signed in with `secret` through the sign-in form."""
    page = context.new_page()
    page.goto(f"{base_url}/signin")
    page.get_by_label("API secret").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/users**")
    return page


def check_axe(page: Page, axe_js: str) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    page.evaluate(axe_js)  # through the DevTools protocol: the page's CSP (scripts of its own only) stays on
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, json.dumps(
        [{"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"][:3]]} for v in bad],
        indent=1,
    )


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
