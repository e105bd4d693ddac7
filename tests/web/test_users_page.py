"""The Users table and the profile page in Chromium: sign-in, the table (order, pages, All Users, count,
columns, export), a profile with its activity, isolation between projects, cookies and CSRF, axe."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import BrowserContext, Page, expect
from web_support import engage, make_project, screenshot, seed_users, sign_in, track


def test_sign_in_refuses_a_wrong_secret_and_keeps_no_secret_in_the_cookie(
    context: BrowserContext, server: Any, project: dict[str, Any], axe: Callable[[Page], None]
) -> None:
    page = context.new_page()
    page.goto(f"{server.url}/users")
    expect(page).to_have_url(f"{server.url}/signin?next=%2Fusers")
    axe(page)
    screenshot(page, "signin")
    page.get_by_label("API secret").fill("not-a-secret")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not the API secret of any project")
    page.get_by_label("API secret").fill(project["api_secret"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.url}/users")
    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["profilestore_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert project["api_secret"] not in session["value"]


def test_a_forged_or_expired_cookie_sends_to_sign_in(
    context: BrowserContext, server: Any, signed_in: Page
) -> None:
    cookie = next(c for c in context.cookies() if c["name"] == "profilestore_session")
    forged = cookie["value"][:-4] + ("AAAA" if not cookie["value"].endswith("AAAA") else "BBBB")
    context.add_cookies([{**cookie, "value": forged}])
    signed_in.goto(f"{server.url}/users/profile?distinct_id=x")
    expect(signed_in).to_have_url(f"{server.url}/signin?next=%2Fusers%2Fprofile%3Fdistinct_id%3Dx")
    assert "Traceback" not in signed_in.content()


def test_forms_need_the_csrf_token(server: Any, context: BrowserContext, signed_in: Page) -> None:
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    with httpx.Client(base_url=server.url, cookies=cookies) as client:
        r = client.post("/signout", data={"csrf": "wrong"})
        assert r.status_code == 403 and "text/html" in r.headers["content-type"]
        assert "CSRF" in r.text
        assert client.get("/users", follow_redirects=False).status_code == 200  # still signed in


def test_users_table_orders_pages_counts_and_remembers_columns(
    server: Any, project: dict[str, Any], context: BrowserContext, axe: Callable[[Page], None]
) -> None:
    seed_users(server.url, project["token"], 120)
    page = sign_in(context, server.url, project["api_secret"])
    rows = page.locator("table.users tbody tr")
    expect(rows).to_have_count(50)
    # Most recently seen first: u000 is the newest.
    expect(rows.first.locator("th.person")).to_contain_text("User 0")
    expect(page.locator(".count-value")).to_have_text("120 matches")
    axe(page)
    screenshot(page, "users")

    page.get_by_role("link", name="Next 50").click()
    expect(rows.first.locator("th.person")).to_contain_text("User 50")
    page.get_by_role("link", name="Next 50").click()
    expect(rows).to_have_count(20)
    expect(page.get_by_role("link", name="Next 50")).to_have_count(0)

    page.goto(f"{server.url}/users")
    page.get_by_role("link", name="logins", exact=True).click()
    expect(page).to_have_url(f"{server.url}/users?sort=logins")
    expect(rows.first.locator("th.person")).to_contain_text("User 119")  # descending
    expect(page.locator("th[aria-sort=descending]")).to_contain_text("logins")
    page.get_by_role("link", name="logins", exact=True).click()
    expect(page).to_have_url(f"{server.url}/users?sort=logins&dir=asc")
    expect(rows.first.locator("th.person")).to_contain_text("User 0")

    page.locator("summary", has_text="Edit Columns").click()
    page.get_by_label("Property columns, in order, comma-separated").fill("plan,$email")
    page.get_by_role("button", name="Show").click()
    headers = page.locator("table.users thead th")
    expect(headers.nth(2)).to_have_text("plan")
    page.goto(f"{server.url}/users")  # remembered in this browser for this project
    expect(page).to_have_url(f"{server.url}/users?cols=plan%2C%24email")


def test_filter_and_all_users(server: Any, project: dict[str, Any], signed_in: Page) -> None:
    seed_users(server.url, project["token"], 9)
    track(
        server.url, [{"event": "Visit", "properties": {"token": project["token"], "distinct_id": "anon-1"}}]
    )
    page = signed_in
    page.goto(f"{server.url}/users")
    page.keyboard.press("/")
    expect(page.get_by_label("Filter")).to_be_focused()
    page.keyboard.type('properties["plan"] == "pro"')
    page.keyboard.press("Enter")
    expect(page.locator("table.users tbody tr")).to_have_count(3)
    expect(page.locator(".count-value")).to_have_text("3 matches")
    page.goto(f"{server.url}/users?where=properties[")
    expect(page.get_by_role("alert")).to_contain_text("where")
    page.goto(f"{server.url}/users")
    page.get_by_role("link", name="All Users").click()
    expect(page.locator("table.users tbody tr")).to_have_count(10)
    expect(page.locator("tr", has_text="anon-1").locator(".badge")).to_have_text("no profile")


def test_export_the_view_and_the_selected_rows(server: Any, project: dict[str, Any], signed_in: Page) -> None:
    seed_users(server.url, project["token"], 6)
    page = signed_in
    page.goto(f"{server.url}/users?cols=plan")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows[0] == ["$distinct_id", "plan"]
    assert sorted(r[0] for r in rows[1:]) == [f"u{i:03d}" for i in range(6)]
    page.get_by_label("Select User 1").check()
    page.get_by_label("Select User 4").check()
    with page.expect_download() as download:
        page.get_by_role("button", name="Export selected").click()
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows == [["$distinct_id", "plan"], ["u001", "free"], ["u004", "free"]]


def test_profile_page_shows_properties_chart_and_activity(
    server: Any, project: dict[str, Any], signed_in: Page, axe: Callable[[Page], None]
) -> None:
    token, now = project["token"], time.time()
    engage(
        server.url,
        [
            {
                "$token": token,
                "$distinct_id": "ann",
                "$set": {"$name": "Ann", "plan": "pro", "seats": 3, "beta": True},
            }
        ],
    )
    events = [
        {
            "event": "Purchase" if i % 2 else "Visit",
            "properties": {
                "token": token,
                "distinct_id": "ann",
                "time": now - 86400 * (i // 3) - i,
                "$insert_id": f"e{i}",
                "amount": i,
            },
        }
        for i in range(60)
    ]
    track(server.url, events)
    page = signed_in
    page.goto(f"{server.url}/users")
    page.get_by_role("link", name="Ann").click()
    expect(page).to_have_url(f"{server.url}/users/profile?distinct_id=ann")
    props = page.locator("table.props").first
    expect(props.locator("tr", has_text="seats").locator("td.type")).to_have_text("number")
    expect(props.locator("tr", has_text="beta").locator("td.type")).to_have_text("boolean")
    expect(page.locator("figcaption")).to_contain_text("60 in all")
    expect(page.locator("svg.chart rect.bar")).to_have_count(90)
    feed = page.locator("ol.feed li.event")
    expect(feed).to_have_count(50)
    expect(feed.first.locator(".ev-name")).to_have_text("Visit")  # newest first: i = 0
    feed.first.locator("summary").click()
    expect(feed.first.locator("tr", has_text="amount")).to_contain_text("0")
    axe(page)
    screenshot(page, "profile")
    page.get_by_role("link", name="Older events").click()
    expect(feed).to_have_count(10)


def test_one_project_never_sees_another(server: Any, database_url: str, context: BrowserContext) -> None:
    a, b = make_project(database_url), make_project(database_url)
    engage(server.url, [{"$token": b["token"], "$distinct_id": "secret-user", "$set": {"$name": "B only"}}])
    page = sign_in(context, server.url, a["api_secret"])
    expect(page.get_by_text("B only")).to_have_count(0)
    page.goto(f"{server.url}/users/profile?distinct_id=secret-user")
    expect(page.get_by_role("heading", name="No such profile")).to_be_visible()
    with page.expect_download() as download:
        page.goto(f"{server.url}/users")
        page.get_by_role("link", name="Export CSV").click()
    assert "secret-user" not in Path(download.value.path()).read_text()


def test_switching_between_projects(server: Any, database_url: str, context: BrowserContext) -> None:
    a, b = make_project(database_url), make_project(database_url)
    engage(server.url, [{"$token": a["token"], "$distinct_id": "in-a", "$set": {"$name": "In A"}}])
    engage(server.url, [{"$token": b["token"], "$distinct_id": "in-b", "$set": {"$name": "In B"}}])
    page = sign_in(context, server.url, a["api_secret"])
    page.goto(f"{server.url}/signin")
    page.get_by_label("API secret").fill(b["api_secret"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="In B")).to_be_visible()
    page.get_by_label("Project").select_option(label=a["name"])
    expect(page.get_by_role("link", name="In A")).to_be_visible()
    expect(page.get_by_role("link", name="In B")).to_have_count(0)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{server.url}/signin")
    page.goto(f"{server.url}/users")
    expect(page).to_have_url(f"{server.url}/signin?next=%2Fusers")
