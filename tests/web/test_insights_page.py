"""Insights in Chromium: events sent through /track over two weeks by four users (three with profiles, sent
through /engage), asked as total and unique, by day and week, broken down by an event and a profile property,
filtered by a saved cohort; every number of the table checked against `POST /api/events/query` asked the same
question with the project's secret; the empty state (its curl command run as shown), the error banner, axe.
Also the line chart alone and the event-name query's plan."""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
from playwright.sync_api import Browser, Page, expect
from web_support import engage, screenshot, sign_in, track

from profilestore.web.linechart import line_chart

FIRST = dt.date(2025, 3, 3)  # a Monday
LAST = dt.date(2025, 3, 16)  # two ISO weeks
RANGE = f"from_date={FIRST}&to_date={LAST}"
# (event, distinct_id or None, day offset from FIRST, properties)
EVENTS: list[tuple[str, str | None, int, dict[str, Any]]] = [
    ("Signed up", "u1", 0, {}),
    ("Signed up", "u2", 1, {}),
    ("Signed up", "u3", 7, {}),
    ("Signed up", "u4", 8, {}),
    ("Viewed page", "u1", 0, {"page": "home"}),
    ("Viewed page", "u1", 0, {"page": "pricing"}),
    ("Viewed page", "u1", 0, {"page": "home"}),
    ("Viewed page", None, 0, {"page": "home"}),
    ("Viewed page", "u1", 1, {"page": "pricing"}),
    ("Viewed page", "u2", 1, {"page": "home"}),
    ("Viewed page", "u2", 1, {"page": "docs"}),
    ("Viewed page", "u3", 9, {"page": "home"}),
    ("Viewed page", "u3", 9, {"page": "home"}),
    ("Viewed page", "u4", 9, {"page": "pricing"}),
    ("Purchase", "u1", 2, {"amount": 10}),
    ("Purchase", "u1", 8, {"amount": 20}),
    ("Purchase", "u3", 10, {"amount": 5}),
    ("Old event", "u1", -40, {}),  # outside the range
]
PLANS = {"u1": "pro", "u2": "pro", "u3": "free"}  # u4 has no profile


def seed(base_url: str, token: str) -> None:
    engage(
        base_url,
        [{"$token": token, "$distinct_id": d, "$set": {"plan": p}} for d, p in PLANS.items()],
    )
    events = []
    for i, (name, who, day, props) in enumerate(EVENTS):
        when = dt.datetime.combine(FIRST + dt.timedelta(days=day), dt.time(12, i), dt.UTC)
        properties = {"token": token, "time": int(when.timestamp()), **props}
        if who is not None:
            properties["distinct_id"] = who
        events.append({"event": name, "properties": properties})
    track(base_url, events)


def api(base_url: str, project: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(
        f"{base_url}/api/events/query",
        json={"from_date": str(FIRST), "to_date": str(LAST), **body},
        auth=(project["api_secret"], ""),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def norm(keys: Any) -> str:
    return json.dumps(keys)


def table_of(page: Page) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The table: its buckets (ISO days), and per series (its keys as JSON) its total and its values."""
    headers, rows = page.evaluate(
        """() => {
          const t = document.querySelector('table.insights-table');
          const heads = [...t.querySelectorAll('thead time')].map(e => e.getAttribute('datetime'));
          const rows = [...t.querySelectorAll('tbody tr')].map(tr => ({
            keys: JSON.parse(tr.dataset.keys), label: tr.querySelector('th').textContent.trim(),
            cells: [...tr.querySelectorAll('td')].map(td => td.textContent.trim())}));
          return [heads, rows];
        }"""
    )
    out = {}
    for row in rows:
        numbers = [int(c.replace(",", "")) for c in row["cells"]]
        out[norm(row["keys"])] = {
            "label": row["label"],
            "total": numbers[0],
            "values": dict(zip(headers, numbers[1:], strict=True)),
        }
    return headers, out


def check_against_api(
    page: Page, base_url: str, project: dict[str, Any], body: dict[str, Any], *, unit: str, measure: str
) -> dict[str, dict[str, Any]]:
    """Every cell of the table equals the API's answer to the same question (absent groups are zeros); each
    series' total equals the API's over the range without the time bucket.  Returns the table."""
    field = "unique" if measure == "unique" else "count"
    timed = api(base_url, project, {**body, "group_by": [*body["group_by"], {"type": "time", "unit": unit}]})
    whole = api(base_url, project, body)
    assert not timed["truncated"]
    expected: dict[str, dict[str, int]] = {}
    for group in timed["results"]:
        expected.setdefault(norm(group["keys"][:-1]), {})[group["keys"][-1]] = group[field]
    totals = {norm(g["keys"]): g[field] for g in whole["results"]}
    headers, table = table_of(page)
    assert set(table) == set(expected)
    for key, row in table.items():
        assert row["values"] == {b: expected[key].get(b, 0) for b in headers}, key
        assert row["total"] == totals[key], key
    grand = page.locator(".grand-total").inner_text().replace(",", "")
    assert int(grand) == whole["total"][field]
    return table


def test_empty_state_shows_a_curl_command_that_works(
    server: Any,
    project: dict[str, Any],
    signed_in: Page,
    db: psycopg.Connection[Any],
    axe: Callable[[Page], None],
) -> None:
    page = signed_in
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Insights").click()
    expect(page).to_have_url(f"{server.url}/insights")
    expect(page.get_by_role("heading", name="No events yet")).to_be_visible()
    command = page.locator(".empty pre code").inner_text()
    assert command.startswith(f"curl -s {server.url}/track -d ")
    assert project["token"] in command
    axe(page)
    result = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == "1"
    rows = db.execute(
        "SELECT event, distinct_id, properties FROM events WHERE project_id = %s", (project["id"],)
    ).fetchall()
    assert [(r["event"], r["distinct_id"], r["properties"]["plan"]) for r in rows] == [
        ("Signed up", "u1", "pro")
    ]
    page.get_by_role("link", name="reload this page").click()
    expect(page.locator("svg.linechart path.line")).to_have_count(1)
    expect(page.locator("table.insights-table tbody tr th")).to_have_text(["All events"])
    expect(page.locator(".grand-total")).to_have_text("1")
    expect(page.get_by_role("checkbox", name="Signed up")).not_to_be_checked()


def test_total_and_unique_by_day_equal_the_api(
    server: Any,
    project: dict[str, Any],
    signed_in: Page,
    db: psycopg.Connection[Any],
    axe: Callable[[Page], None],
) -> None:
    seed(server.url, project["token"])
    page = signed_in
    page.goto(f"{server.url}/insights?{RANGE}")
    # The picker lists the names of the range only, in order.
    boxes = page.locator("[data-checklist] input[type=checkbox]")
    expect(boxes).to_have_count(3)
    assert [boxes.nth(i).get_attribute("value") for i in range(3)] == ["Purchase", "Signed up", "Viewed page"]
    page.get_by_role("checkbox", name="Signed up").check()
    page.get_by_role("checkbox", name="Viewed page").check()
    page.get_by_role("button", name="Apply").click()
    # insights.js leaves the empty fields out of the URL.
    expect(page).to_have_url(
        f"{server.url}/insights?event=Signed+up&event=Viewed+page&measure=total&unit=day&{RANGE}"
    )
    chart = page.locator("svg.linechart")
    expect(chart.locator("path.line")).to_have_count(2)
    expect(chart.locator("circle.point")).to_have_count(2 * 14)
    expect(chart.locator("circle.point title").first).to_have_text("Viewed page · Mar 3, 2025: 4 events")
    expect(chart.locator(".legend text")).to_have_text(["Viewed page", "Signed up"])
    expect(chart.locator(".axis-title")).to_have_text(["Total events", "Day (UTC)"])
    body = {"events": ["Signed up", "Viewed page"], "group_by": [{"type": "event"}]}
    table = check_against_api(page, server.url, project, body, unit="day", measure="total")
    viewed = table[norm(["Viewed page"])]
    assert (viewed["values"]["2025-03-03"], viewed["values"]["2025-03-04"], viewed["total"]) == (4, 3, 10)
    stored = db.execute(
        "SELECT count(*) AS n FROM events WHERE project_id = %s AND event IN ('Signed up', 'Viewed page')",
        (project["id"],),
    ).fetchone()
    expect(page.locator(".grand-total")).to_have_text(str(stored["n"]))
    axe(page)
    screenshot(page, "insights")

    page.get_by_label("Unique users").check()
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"measure=unique"))
    expect(chart.locator(".axis-title").first).to_have_text("Unique users")
    table = check_against_api(page, server.url, project, body, unit="day", measure="unique")
    viewed = table[norm(["Viewed page"])]
    # u1 three times and an event without a user on Mar 3: one user; u1 and u2 on Mar 4; u1..u4 in all.
    assert (viewed["values"]["2025-03-03"], viewed["values"]["2025-03-04"], viewed["total"]) == (1, 2, 4)
    expect(page.locator(".grand-total")).to_have_text("4")


def test_weekly_broken_down_by_an_event_property(
    server: Any, project: dict[str, Any], signed_in: Page, axe: Callable[[Page], None]
) -> None:
    seed(server.url, project["token"])
    page = signed_in
    page.goto(f"{server.url}/insights?{RANGE}&event=Viewed+page")
    page.get_by_label("Interval").select_option("week")
    page.get_by_label("Property of").select_option("property")
    page.get_by_label("Property name").fill("page")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"unit=week.*breakdown_type=property&breakdown=page"))
    expect(page.locator("svg.linechart path.line")).to_have_count(3)
    expect(page.locator("svg.linechart .axis-title").last).to_have_text("Week, from Monday (UTC)")
    body = {"events": ["Viewed page"], "group_by": [{"type": "event"}, {"type": "property", "name": "page"}]}
    table = check_against_api(page, server.url, project, body, unit="week", measure="total")
    assert {k: (r["label"], list(r["values"].values())) for k, r in table.items()} == {
        norm(["Viewed page", "home"]): ("Viewed page · home", [4, 2]),
        norm(["Viewed page", "pricing"]): ("Viewed page · pricing", [2, 1]),
        norm(["Viewed page", "docs"]): ("Viewed page · docs", [1, 0]),
    }
    page.get_by_label("Unique users").check()
    page.get_by_role("button", name="Apply").click()
    table = check_against_api(page, server.url, project, body, unit="week", measure="unique")
    assert list(table[norm(["Viewed page", "home"])]["values"].values()) == [2, 1]
    axe(page)


def test_broken_down_by_a_profile_property_and_filtered_by_a_cohort(
    server: Any, project: dict[str, Any], signed_in: Page, axe: Callable[[Page], None]
) -> None:
    seed(server.url, project["token"])
    made = httpx.post(
        f"{server.url}/api/cohorts",
        json={"name": "Buyers", "distinct_ids": ["u1", "u3"]},
        auth=(project["api_secret"], ""),
    )
    assert made.status_code == 201, made.text
    cohort = made.json()["id"]
    page = signed_in
    page.goto(f"{server.url}/insights?{RANGE}&unit=month")
    page.get_by_label("Property of").select_option("user")
    page.get_by_label("Property name").fill("plan")
    page.get_by_role("button", name="Apply").click()
    body: dict[str, Any] = {"group_by": [{"type": "user", "name": "plan"}]}
    table = check_against_api(page, server.url, project, body, unit="month", measure="total")
    # u4 (no profile) and the event without a user have no plan.
    assert {r["label"]: r["total"] for r in table.values()} == {"pro": 10, "free": 4, "(not set)": 3}

    page.get_by_label("Cohort").select_option(label="Buyers")
    page.get_by_label("Unique users").check()
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(rf"cohort={cohort}"))
    expect(page.get_by_role("heading", level=2)).to_contain_text("in cohort Buyers")
    table = check_against_api(
        page, server.url, project, {**body, "cohort": {"id": cohort}}, unit="month", measure="unique"
    )
    assert {r["label"]: r["total"] for r in table.values()} == {"pro": 1, "free": 1}
    expect(page.locator("svg.linechart path.line")).to_have_count(2)
    axe(page)


def test_the_form_works_without_javascript(server: Any, project: dict[str, Any], browser: Browser) -> None:
    seed(server.url, project["token"])
    context = browser.new_context(java_script_enabled=False)
    try:
        page = sign_in(context, server.url, project["api_secret"])
        page.goto(f"{server.url}/insights?{RANGE}")
        page.get_by_role("checkbox", name="Purchase").check()
        page.get_by_label("Unique users").check()
        page.get_by_label("Interval").select_option("week")
        page.get_by_role("button", name="Apply").click()
        expect(page).to_have_url(
            f"{server.url}/insights?event=Purchase&measure=unique&unit=week&{RANGE}"
            "&breakdown_type=property&breakdown=&cohort=&where="
        )
        expect(page.locator("svg.linechart path.line")).to_have_count(1)
        body = {"events": ["Purchase"], "group_by": [{"type": "event"}]}
        table = check_against_api(page, server.url, project, body, unit="week", measure="unique")
        assert table[norm(["Purchase"])]["values"] == {"2025-03-03": 1, "2025-03-10": 2}
    finally:
        context.close()


def test_a_bad_parameter_is_a_banner_naming_it(
    server: Any, project: dict[str, Any], signed_in: Page, axe: Callable[[Page], None]
) -> None:
    seed(server.url, project["token"])
    page = signed_in
    cases = {
        "from_date=2025-13-01&to_date=2025-03-16": "from_date: must be a date YYYY-MM-DD",
        f"from_date={LAST}&to_date={FIRST}": "to_date: must not be before from_date",
        "from_date=2020-01-01&to_date=2025-03-16": "to_date: a chart has at most 400 points",
        f"{RANGE}&where=properties[": "where:",
        f"{RANGE}&cohort=999999": "cohort: no cohort '999999' in this project",
        f"{RANGE}&measure=most": "measure: must be total or unique",
        f"{RANGE}&unit=hour": "unit: must be day, week or month",
        f"{RANGE}&breakdown_type=group&breakdown=x": "breakdown_type: must be property or user",
    }
    for query, message in cases.items():
        response = page.goto(f"{server.url}/insights?{query}")
        assert response is not None and response.status == 400, query
        expect(page.get_by_role("alert")).to_contain_text(message)
        expect(page.locator("svg.linechart")).to_have_count(0)
    # The input stays as typed, and the picker still lists the default range's names.
    page.goto(f"{server.url}/insights?{RANGE}&where=properties[&breakdown=page")
    expect(page.get_by_label("Filter")).to_have_value("properties[")
    expect(page.get_by_label("Property name")).to_have_value("page")
    expect(page.get_by_label("Filter")).to_have_attribute("aria-invalid", "true")
    axe(page)
    # A range without any of the project's events: a note, no chart.
    page.goto(f"{server.url}/insights?from_date=2024-01-01&to_date=2024-01-31")
    expect(page.locator(".insights-result .empty")).to_contain_text("No events match")
    expect(page.get_by_text("No events in this range.")).to_be_visible()


def test_event_search_filters_the_picker_with_javascript(
    server: Any, project: dict[str, Any], signed_in: Page
) -> None:
    names = [f"Event {i:02d}" for i in range(12)]
    track(
        server.url,
        [{"event": n, "properties": {"token": project["token"], "distinct_id": "u1"}} for n in names],
    )
    page = signed_in
    page.goto(f"{server.url}/insights?event=Event+07")
    page.get_by_label("Find an event").fill("event 1")
    visible = page.locator("[data-checklist] label.check:visible")
    expect(visible).to_have_text(["Event 07", "Event 10", "Event 11"])  # a ticked one stays
    page.get_by_label("Find an event").press("Enter")  # finds, does not submit
    expect(page).to_have_url(f"{server.url}/insights?event=Event+07")


def test_the_line_chart_draws_a_line_per_series_with_labelled_axes() -> None:
    days = [dt.date(2025, 12, 29), dt.date(2026, 1, 5), dt.date(2026, 1, 12)]
    svg = str(
        line_chart(
            days,
            [("Signed up", [1, 0, 12]), ('<b>"x"</b>', [3, 3, 3])],
            unit="week",
            y_title="Total events",
            nouns=("event", "events"),
            label="Signed up by week",
        )
    )
    assert svg.count("<path ") == 2 and svg.count("<circle ") == 6
    assert "<title>Signed up · week of Dec 29, 2025: 1 event</title>" in svg
    assert "<title>Signed up · week of Jan 12, 2026: 12 events</title>" in svg
    assert "&lt;b&gt;&#34;x&#34;&lt;/b&gt;" in svg and "<b>" not in svg
    assert ">Total events</text>" in svg and ">Week, from Monday (UTC)</text>" in svg
    # Dates on the x axis, the year where it changes; round values on the y axis.
    assert re.findall(
        r'class="axis" x="[0-9.]+" y="[0-9.]+" text-anchor="(?:start|middle)">([^<]+)<', svg
    ) == [
        "Dec 29, 2025",
        "Jan 5, 2026",
        "Jan 12",
    ]
    assert re.findall(r'text-anchor="end">([0-9,]+)<', svg) == ["0", "5", "10", "15"]
    assert "style=" not in svg
    assert str(line_chart([], [], unit="day", y_title="", nouns=("", ""), label="")) == ""
    single = str(line_chart(days[:1], [("a", [0])], unit="month", y_title="U", nouns=("u", "u"), label="l"))
    assert single.count("<circle ") == 1 and ">Dec 2025<" in single
