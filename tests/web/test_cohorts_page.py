"""The filter builder on the Users page and the Cohorts page in Chromium: property conditions (with their
expression and rows), and/or groups, behavioural conditions over events sent through /track, the builder
without JavaScript, Save as cohort, and the list: counts, open, rename, duplicate, delete, and the refusal
(409) to delete a cohort another one uses; axe on each page."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
from playwright.sync_api import Browser, Page, expect
from web_support import engage, screenshot, seed_users, sign_in, track

from profilestore.web.cohort_filter import Builder
from support import profiles_of

DB = psycopg.Connection[dict[str, Any]]


def api(server: Any, project: dict[str, Any]) -> httpx.Client:
    auth = base64.b64encode(f"{project['api_secret']}:".encode()).decode()
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Basic {auth}"}, timeout=30)


def cohorts_of(db: DB, project_id: int) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT id, name, is_static, definition FROM cohorts WHERE project_id = %s ORDER BY id", (project_id,)
    ).fetchall()


def people(page: Page) -> list[str]:
    """The distinct_ids of the table's rows, in order."""
    links = page.locator("table.users tbody th.person a")
    return [h.split("distinct_id=")[1] for h in links.evaluate_all("els => els.map(e => e.href)")]


def test_property_conditions_build_an_expression_and_filter_the_table(
    server: Any, project: dict[str, Any], signed_in: Page, axe: Callable[[Page], None], db: DB
) -> None:
    seed_users(server.url, project["token"], 9)
    now = time.time()
    engage(
        server.url,
        [
            {
                "$token": project["token"],
                "$distinct_id": f"u{i:03d}",
                "$set": {
                    "signup": f"2026-01-{i + 1:02d}T12:00:00",
                    "last_login": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - i * 86400 - 3600)),
                },
            }
            for i in range(9)
        ],
    )
    page = signed_in
    page.goto(f"{server.url}/users")
    page.locator("summary", has_text="Build a filter").click()
    page.get_by_role("button", name="Add property condition").click()
    expect(page.get_by_label("Condition 1: property")).to_be_focused()
    page.get_by_label("Condition 1: property").fill("plan")
    page.get_by_label("Condition 1: value").fill("pro")
    where = page.locator("[data-where]")
    expect(where).to_have_text('properties["plan"] == "pro"')
    page.get_by_role("button", name="Add property condition").click()
    page.get_by_label("Condition 2: property").fill("logins")
    page.get_by_label("Condition 2: type").select_option("number")
    page.get_by_label("Condition 2: operator").select_option("gt")
    page.get_by_label("Condition 2: value").fill("3")
    expect(where).to_have_text('properties["plan"] == "pro" and properties["logins"] > 3')
    page.get_by_role("button", name="Apply filter").click()
    expect(page.locator(".count-value")).to_have_text("1 match")
    assert people(page) == ["u006"]
    profiles = profiles_of(db, project["id"])
    assert {
        d for d, p in profiles.items() if p["properties"]["plan"] == "pro" and p["properties"]["logins"] > 3
    } == {"u006"}
    expect(where).to_have_text('properties["plan"] == "pro" and properties["logins"] > 3')  # after the load
    expect(page.get_by_label("Condition 2: type")).to_have_value("number")
    axe(page)
    screenshot(page, "filter")

    # Dates: between two days (both whole days), and the last N days.
    page.get_by_role("button", name="Remove condition 2").click()
    page.get_by_label("Condition 1: property").fill("signup")
    page.get_by_label("Condition 1: type").select_option("date")
    page.get_by_label("Condition 1: operator").select_option("between")
    page.get_by_label("Condition 1: value").fill("2026-01-03")
    page.get_by_label("condition 1: end date").fill("2026-01-05")
    expect(where).to_have_text(
        'datetime(properties["signup"]) >= "2026-01-03" and datetime(properties["signup"]) < "2026-01-06"'
    )
    page.get_by_role("button", name="Apply filter").click()
    expect(page.locator(".count-value")).to_have_text("3 matches")
    assert sorted(people(page)) == ["u002", "u003", "u004"]
    page.get_by_label("Condition 1: property").fill("last_login")
    page.get_by_label("Condition 1: operator").select_option("last")
    page.get_by_label("Condition 1: value").fill("3")
    expect(where).to_have_text('datetime(properties["last_login"]) >= now() - 3 * 86400')
    page.get_by_label("Condition 1: value").press("Enter")
    expect(page.locator(".count-value")).to_have_text("3 matches")
    assert sorted(people(page)) == ["u000", "u001", "u002"]

    # Is not set, and a value the type cannot hold: a clear message, no rows.
    page.get_by_label("Condition 1: property").fill("nickname")
    page.get_by_label("Condition 1: type").select_option("text")
    page.get_by_label("Condition 1: operator").select_option("not_set")
    expect(where).to_have_text('not defined(properties["nickname"])')
    page.get_by_role("button", name="Apply filter").click()
    expect(page.locator(".count-value")).to_have_text("9 matches")
    page.goto(f"{server.url}/users?c0_kind=prop&c0_prop=nickname&c0_type=number&c0_op=gt&c0_v=many")
    expect(page.get_by_role("alert").first).to_have_text("condition 1 (nickname): many is not a number")
    expect(page.locator("table.users")).to_have_count(0)


def test_or_groups_and_groups_combined(server: Any, project: dict[str, Any], signed_in: Page) -> None:
    seed_users(server.url, project["token"], 9)
    page = signed_in
    page.goto(f"{server.url}/users")
    page.locator("summary", has_text="Build a filter").click()
    page.get_by_label("Match in group 1").select_option("or")
    page.get_by_role("button", name="Add property condition").click()
    page.get_by_label("Condition 1: property").fill("plan")
    page.get_by_label("Condition 1: value").fill("pro")
    page.get_by_role("button", name="Add property condition").click()
    page.get_by_label("Condition 2: property").fill("logins")
    page.get_by_label("Condition 2: type").select_option("number")
    page.get_by_label("Condition 2: operator").select_option("lt")
    page.get_by_label("Condition 2: value").fill("2")
    where = page.locator("[data-where]")
    expect(where).to_have_text('properties["plan"] == "pro" or properties["logins"] < 2')
    page.get_by_role("button", name="Apply filter").click()
    expect(page.locator(".count-value")).to_have_text("4 matches")
    assert sorted(people(page)) == ["u000", "u001", "u003", "u006"]

    expect(page.get_by_label("Groups combine with")).to_be_hidden()  # one group
    page.get_by_role("button", name="Add group").click()
    expect(page.get_by_label("Groups combine with")).to_be_visible()
    group2 = page.locator("fieldset", has_text="Group 2")
    group2.get_by_role("button", name="Add property condition").click()
    page.get_by_label("Condition 3: property").fill("tags")
    page.get_by_label("Condition 3: type").select_option("list")
    page.get_by_label("Condition 3: operator").select_option("contains")
    page.get_by_label("Condition 3: value").fill("a")
    expect(where).to_have_text(
        '(properties["plan"] == "pro" or properties["logins"] < 2) and "a" in properties["tags"]'
    )
    page.get_by_role("button", name="Apply filter").click()
    expect(page.locator(".count-value")).to_have_text("2 matches")
    assert sorted(people(page)) == ["u001", "u003"]
    page.get_by_label("Groups combine with").select_option("or")
    expect(where).to_have_text(
        'properties["plan"] == "pro" or properties["logins"] < 2 or "a" in properties["tags"]'
    )
    page.get_by_role("button", name="Apply filter").click()
    expect(page.locator(".count-value")).to_have_text("6 matches")
    assert sorted(people(page)) == ["u000", "u001", "u003", "u005", "u006", "u007"]
    # The typed filter applies too (and): the builder's conditions and the expression above.
    page.get_by_label("Filter").fill('properties["logins"] >= 5')
    page.get_by_label("Filter").press("Enter")
    expect(page.locator(".count-value")).to_have_text("3 matches")
    assert sorted(people(page)) == ["u005", "u006", "u007"]


def purchases(token: str, now: float) -> list[dict[str, Any]]:
    """u001: 4 in the last 30 days; u002: 3, two of them older; u003: 3 recent; u004: 1; u005: 5 Visits."""
    days = {"u001": [1, 2, 3, 4], "u002": [1, 40, 45], "u003": [5, 6, 7], "u004": [1]}
    events = [
        {
            "event": "Purchase",
            "properties": {
                "token": token,
                "distinct_id": d,
                "time": now - n * 86400 - 60,
                "$insert_id": f"{d}-{n}",
            },
        }
        for d, ns in days.items()
        for n in ns
    ]
    events += [
        {
            "event": "Visit",
            "properties": {"token": token, "distinct_id": "u005", "time": now - k, "$insert_id": f"v{k}"},
        }
        for k in range(5)
    ]
    return events


BUYERS = {
    "op": "and",
    "negate": False,
    "filters": [
        {
            "type": "event",
            "event": "Purchase",
            "count": {"op": ">=", "value": 3},
            "window": {"last": 30, "unit": "day"},
            "negate": False,
        }
    ],
}


def test_behavioural_condition_and_save_as_cohort(
    server: Any, project: dict[str, Any], signed_in: Page, axe: Callable[[Page], None], db: DB
) -> None:
    seed_users(server.url, project["token"], 9)
    track(server.url, purchases(project["token"], time.time()))
    page = signed_in
    page.goto(f"{server.url}/users")
    page.locator("summary", has_text="Build a filter").click()
    page.get_by_role("button", name="Add behaviour").click()
    page.get_by_label("condition 1: event name").fill("Purchase")
    page.get_by_label("Condition 1: how often").select_option(">=")
    page.get_by_label("Condition 1: times").fill("3")
    page.get_by_label("Condition 1: in the last how many days").fill("30")
    expect(page.locator("[data-behaviour]")).to_have_text(
        'did "Purchase" at least 3 times in the last 30 days'
    )
    page.get_by_role("button", name="Apply filter").click()
    expect(page.locator(".count-value")).to_have_text("2 matches")
    assert people(page) == ["u001", "u003"]  # most recently seen first

    page.locator("summary", has_text="Save as cohort").click()
    expect(page.locator(".save-cohort")).to_contain_text(
        'did "Purchase" at least 3 times in the last 30 days'
    )
    page.get_by_label("Cohort name").fill("Buyers")
    page.get_by_role("button", name="Save cohort").click()
    saved = cohorts_of(db, project["id"])
    assert [(c["name"], c["is_static"], c["definition"]) for c in saved] == [("Buyers", False, BUYERS)]
    cohort_id = saved[0]["id"]
    expect(page).to_have_url(f"{server.url}/users?cohort={cohort_id}&saved=1")
    expect(page.get_by_role("status")).to_contain_text("Saved as cohort “Buyers”")
    expect(page.locator("form.filter")).to_contain_text("In cohort Buyers")
    assert people(page) == ["u001", "u003"]
    axe(page)

    page.goto(f"{server.url}/cohorts")
    row = page.locator(f"#cohort-{cohort_id}")
    expect(row.locator("[data-count=profiles]")).to_have_text("2")
    expect(row.locator("[data-count=all]")).to_have_text("2")
    expect(row.locator(".who")).to_have_text('did "Purchase" at least 3 times in the last 30 days')

    # An unsaved definition in the URL (`raw`) filters the table too, and with a property and `or`:
    raw = {"op": "or", "filters": [BUYERS, {"type": "property", "where": 'properties["plan"] == "pro"'}]}
    page.goto(f"{server.url}/users?raw={quote(json.dumps(raw))}")
    expect(page.locator(".count-value")).to_have_text("4 matches")
    assert sorted(people(page)) == ["u000", "u001", "u003", "u006"]
    # The builder does the same with groups combined by `or` (a property group and a behaviour group).
    page.goto(
        f"{server.url}/users?match=or&g0=and&c0_g=0&c0_kind=prop&c0_prop=plan&c0_type=text&c0_op=eq&c0_v=pro"
        "&g1=and&c1_g=1&c1_kind=event&c1_event=Purchase&c1_cop=%3E%3D&c1_n=3&c1_days=30"
    )
    expect(page.locator("[data-behaviour]")).to_have_text(
        'properties["plan"] == "pro" or did "Purchase" at least 3 times in the last 30 days'
    )
    expect(page.locator(".count-value")).to_have_text("4 matches")
    assert sorted(people(page)) == ["u000", "u001", "u003", "u006"]


def test_the_builder_works_without_javascript(browser: Browser, server: Any, project: dict[str, Any]) -> None:
    seed_users(server.url, project["token"], 9)
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    try:
        page = sign_in(context, server.url, project["api_secret"])
        page.locator("summary", has_text="Build a filter").click()
        page.get_by_role("button", name="Add property condition").click()  # a round trip
        expect(page).to_have_url(
            f"{server.url}/users?match=and&g0=and&c0_g=0&c0_kind=prop&c0_type=text&c0_op=eq#c0"
        )
        page.get_by_label("Condition 1: property").fill("plan")
        page.get_by_label("Condition 1: value").fill("pro")
        page.get_by_role("button", name="Add property condition").click()
        page.get_by_label("Condition 2: property").fill("logins")
        page.get_by_label("Condition 2: type").select_option("number")
        page.get_by_label("Condition 2: operator").select_option("gt")
        page.get_by_label("Condition 2: value").fill("0")
        page.get_by_role("button", name="Apply filter").click()
        expect(page.locator("[data-where]")).to_have_text(
            'properties["plan"] == "pro" and properties["logins"] > 0'
        )
        assert people(page) == ["u003", "u006"]
        page.get_by_role("button", name="Remove condition 2").click()
        expect(page.get_by_label("Condition 2: property")).to_have_count(0)
        assert people(page) == ["u000", "u003", "u006"]
        # Edit as text: the conditions become the typed expression.
        page.get_by_role("button", name="Edit as text").click()
        expect(page.get_by_label("Filter")).to_have_value('properties["plan"] == "pro"')
        expect(page.get_by_label("Condition 1: property")).to_have_count(0)
        assert people(page) == ["u000", "u003", "u006"]
    finally:
        context.close()


def test_cohorts_page_counts_open_rename_duplicate_delete(
    server: Any, project: dict[str, Any], signed_in: Page, axe: Callable[[Page], None], db: DB
) -> None:
    seed_users(server.url, project["token"], 9)
    track(
        server.url, [{"event": "Visit", "properties": {"token": project["token"], "distinct_id": "anon-1"}}]
    )
    with api(server, project) as client:
        pros = client.post(
            "/api/cohorts",
            json={
                "name": "Pros",
                "definition": {"filters": [{"type": "property", "where": 'properties["plan"] == "pro"'}]},
            },
        ).json()
        fixed = client.post(
            "/api/cohorts", json={"name": "Fixed few", "distinct_ids": ["u001", "anon-1", "ghost"]}
        ).json()
    page = signed_in
    page.goto(f"{server.url}/cohorts")
    row = page.locator(f"#cohort-{pros['id']}")
    expect(row.locator("[data-count=profiles]")).to_have_text("3")
    expect(row.locator("[data-count=all]")).to_have_text("3")
    static = page.locator(f"#cohort-{fixed['id']}")
    expect(static.locator("[data-count=profiles]")).to_have_text("1")  # u001 (anon-1 has no profile)
    expect(static.locator("[data-count=all]")).to_have_text("2")  # and anon-1; ghost was never seen
    expect(static).to_contain_text("static")
    expect(static.locator(".who")).to_have_text("a fixed list: 2 members")
    axe(page)
    screenshot(page, "cohorts")

    # Open: the Users table filtered by the cohort.
    row.get_by_role("link", name="Open Pros").click()
    expect(page).to_have_url(f"{server.url}/users?cohort={pros['id']}")
    assert sorted(people(page)) == ["u000", "u003", "u006"]

    # Rename (the list shows the new name; the database holds it).
    page.goto(f"{server.url}/cohorts")
    row.locator("summary", has_text="Rename").click()
    expect(page.get_by_label("New name for Pros")).to_be_focused()
    page.get_by_label("New name for Pros").fill("Pro plan")
    row.get_by_role("button", name="Save name").click()
    expect(page.get_by_role("status")).to_have_text("Renamed to “Pro plan”.")
    expect(row.locator("th a")).to_have_text("Pro plan")
    assert [c["name"] for c in cohorts_of(db, project["id"])] == ["Pro plan", "Fixed few"]

    # Duplicate, both kinds: same definition, same members.
    row.get_by_role("button", name="Duplicate Pro plan").click()
    expect(page.get_by_role("status")).to_have_text("Duplicated as “Pro plan (copy)”.")
    static.get_by_role("button", name="Duplicate Fixed few").click()
    expect(page.get_by_role("status")).to_have_text("Duplicated as “Fixed few (copy)”.")
    found = cohorts_of(db, project["id"])
    assert [c["name"] for c in found] == ["Pro plan", "Fixed few", "Pro plan (copy)", "Fixed few (copy)"]
    assert found[2]["definition"] == found[0]["definition"] and not found[2]["is_static"]
    assert found[3]["is_static"] and found[3]["definition"] is None
    members = db.execute(
        "SELECT distinct_id FROM cohort_members WHERE cohort_id = %s ORDER BY 1", (found[3]["id"],)
    ).fetchall()
    assert [m["distinct_id"] for m in members] == ["anon-1", "u001"]
    copy = page.locator(f"#cohort-{found[2]['id']}")
    expect(copy.locator("[data-count=profiles]")).to_have_text("3")

    # Delete asks first; dismissed, nothing happens.
    page.once("dialog", lambda d: d.dismiss())
    copy.get_by_role("button", name="Delete Pro plan (copy)").click()
    expect(copy).to_be_visible()
    page.once("dialog", lambda d: d.accept())
    copy.get_by_role("button", name="Delete Pro plan (copy)").click()
    expect(page.get_by_role("status")).to_have_text("Deleted “Pro plan (copy)”.")
    expect(page.locator(f"#cohort-{found[2]['id']}")).to_have_count(0)
    assert [c["name"] for c in cohorts_of(db, project["id"])] == ["Pro plan", "Fixed few", "Fixed few (copy)"]
    axe(page)


def test_deleting_a_cohort_another_uses_is_refused_with_a_message(
    server: Any, project: dict[str, Any], signed_in: Page, axe: Callable[[Page], None], db: DB
) -> None:
    seed_users(server.url, project["token"], 3)
    with api(server, project) as client:
        base = client.post(
            "/api/cohorts",
            json={
                "name": "Free",
                "definition": {"filters": [{"type": "property", "where": 'properties["plan"] == "free"'}]},
            },
        ).json()
        user = client.post(
            "/api/cohorts",
            json={"name": "Free, seen", "definition": {"filters": [{"type": "cohort", "id": base["id"]}]}},
        ).json()
    page = signed_in
    page.goto(f"{server.url}/cohorts")
    page.on("dialog", lambda d: d.accept())
    with page.expect_response(lambda r: r.url.endswith(f"/cohorts/{base['id']}/delete")) as answer:
        page.get_by_role("button", name="Delete Free", exact=True).click()
    assert answer.value.status == 409
    expect(page.get_by_role("alert")).to_have_text(
        "“Free” was not deleted: it is used by “Free, seen”. Change or delete that cohort first."
    )
    assert "Traceback" not in page.content()
    assert [c["id"] for c in cohorts_of(db, project["id"])] == [base["id"], user["id"]]
    expect(page.locator(f"#cohort-{user['id']} [data-count=profiles]")).to_have_text("2")
    axe(page)
    # Once the user is gone, the cohort it used can go.
    page.get_by_role("button", name="Delete Free, seen").click()
    expect(page.get_by_role("status")).to_have_text("Deleted “Free, seen”.")
    page.get_by_role("button", name="Delete Free", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Deleted “Free”.")
    assert cohorts_of(db, project["id"]) == []


def test_builder_compiles_behaviour_into_a_definition() -> None:
    """Pure: which part goes to `where` and which to the definition."""
    q = {
        "match": "and",
        "g0": "or",
        "c0_g": "0",
        "c0_kind": "prop",
        "c0_prop": "plan",
        "c0_type": "text",
        "c0_op": "eq",
        "c0_v": 'say "hi"',
        "c0_x": "ignored",
        "c1_g": "0",
        "c1_kind": "event",
        "c1_event": "Purchase",
        "c1_cop": "==",
        "c1_n": "0",
        "g1": "and",
        "c2_g": "1",
        "c2_kind": "prop",
        "c2_prop": "age",
        "c2_type": "number",
        "c2_op": "ne",
        "c2_v": "30.50",
        "c3_g": "1",
        "c3_kind": "prop",
        "c3_prop": "",
    }
    builder, action = Builder.of(q)
    assert action is None
    built = builder.compile()
    assert built.errors == []
    assert built.where == 'properties["age"] != 30.5'
    assert built.definition == {
        "op": "or",
        "filters": [
            {"type": "property", "where": 'properties["plan"] == "say \\"hi\\""'},
            {"type": "event", "event": "Purchase", "count": {"op": "==", "value": 0}},
        ],
    }
    assert built.as_json()["behaviour"] == 'properties["plan"] == "say \\"hi\\"" or did not do "Purchase"'
    wrong = Builder.of({**q, "c2_type": "boolean"})[0].compile()
    assert wrong.errors == ["condition 3 (age): “does not equal” does not apply to boolean properties"]


def test_what_the_service_refuses_is_shown_on_the_page(
    server: Any, project: dict[str, Any], signed_in: Page, axe: Callable[[Page], None], db: DB
) -> None:
    seed_users(server.url, project["token"], 3)
    page = signed_in
    free = quote('properties["plan"] == "free"')
    page.goto(f"{server.url}/users?where={free}")
    page.locator("summary", has_text="Save as cohort").click()
    page.get_by_label("Cohort name").fill("   ")  # passes `required`; the server wants a real name
    page.get_by_role("button", name="Save cohort").click()
    expect(page.get_by_role("heading", name="Save as cohort")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_text("a cohort needs a name")
    expect(page.locator("main")).to_contain_text('Members: properties["plan"] == "free"')
    axe(page)
    assert cohorts_of(db, project["id"]) == []
    page.get_by_label("Cohort name").fill("Free")
    page.get_by_role("button", name="Save cohort").click()
    [saved] = cohorts_of(db, project["id"])
    expect(page).to_have_url(f"{server.url}/users?cohort={saved['id']}&saved=1")
    assert sorted(people(page)) == ["u001", "u002"]

    csrf = page.locator("meta[name=csrf-token]").get_attribute("content")
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=server.url, cookies=cookies, timeout=30) as client:
        r = client.post(f"/cohorts/{saved['id']}/rename", data={"csrf": csrf, "name": " "})
        assert (
            r.status_code == 400 and "Could not rename cohort" in r.text and "a cohort needs a name" in r.text
        )
        r = client.post(
            "/cohorts/new",
            data={"csrf": csrf, "name": "Bad", "definition": '{"filters": [{"type": "event"}]}'},
        )
        assert r.status_code == 400 and "definition.filters[0].event: required" in r.text
        assert 'value="Bad"' in r.text  # the input is kept
        r = client.post("/cohorts/99999999/delete", data={"csrf": csrf})
        assert r.status_code == 404 and "no cohort 99999999 in this project" in r.text
        assert client.post(f"/cohorts/{saved['id']}/delete", data={"csrf": "wrong"}).status_code == 403
    assert [c["name"] for c in cohorts_of(db, project["id"])] == ["Free"]
