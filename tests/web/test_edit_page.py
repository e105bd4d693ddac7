"""Add/Edit Profile in Chromium: create with typed properties, the modes' refusals, editing and unsetting,
deletion after confirmation, group profiles, autocomplete, validation banners, the form without JavaScript,
CSRF; what the page shows and what the database holds afterwards; axe on every state."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
from playwright.sync_api import Browser, BrowserContext, Page, expect
from web_support import engage, screenshot, sign_in, track

Db = psycopg.Connection[dict[str, Any]]


def stored(db: Db, project_id: int, distinct_id: str) -> dict[str, Any] | None:
    row = db.execute(
        "SELECT properties FROM profiles WHERE project_id = %s AND distinct_id = %s",
        (project_id, distinct_id),
    ).fetchone()
    return None if row is None else dict(row["properties"])


def stored_group(db: Db, project_id: int, key: str, group_id: str) -> dict[str, Any] | None:
    row = db.execute(
        "SELECT properties FROM group_profiles WHERE project_id = %s AND group_key = %s AND group_id = %s",
        (project_id, key, group_id),
    ).fetchone()
    return None if row is None else dict(row["properties"])


def count_profiles(db: Db, project_id: int) -> int:
    row = db.execute("SELECT count(*) AS n FROM profiles WHERE project_id = %s", (project_id,)).fetchone()
    assert row is not None
    return int(row["n"])


def add_row(page: Page, name: str, value: str, kind: str = "Text") -> None:
    """Clicks "Add Property" and fills the new (last) row."""
    page.get_by_role("button", name="+ Add Property").click()
    row = page.locator("table.edit-props tbody tr").last
    expect(row.get_by_label("Property name")).to_be_focused()
    row.get_by_label("Property name").fill(name)
    row.get_by_label("Type of the new property").select_option(label=kind)
    row.get_by_label("Value of the new property").fill(value)


def fill_first(page: Page, name: str, value: str, kind: str = "Text") -> None:
    """Fills the blank row the page starts with (the last row)."""
    row = page.locator("table.edit-props tbody tr").last
    row.get_by_label("Property name").fill(name)
    row.get_by_label("Type of the new property").select_option(label=kind)
    row.get_by_label("Value of the new property").fill(value)


def test_create_a_profile_with_typed_properties(
    server: Any, project: dict[str, Any], signed_in: Page, db: Db, axe: Callable[[Page], None]
) -> None:
    page = signed_in
    page.get_by_role("link", name="Add/Edit Profile").click()
    expect(page).to_have_url(f"{server.url}/users/edit")
    expect(page.get_by_label("Create a new profile")).to_be_checked()
    expect(page.get_by_label("Group key")).to_be_hidden()  # a user profile: no group key
    axe(page)
    page.get_by_label("$distinct_id (required)").fill("ada-1")
    fill_first(page, "$email", "ada@example.com")
    add_row(page, "$phone", "+14155550123")
    add_row(page, "age", "36", "Number")
    add_row(page, "score", "9.5", "Number")
    add_row(page, "vip", "true", "Boolean")
    add_row(page, "tags", '["a", "b"]', "List (JSON)")
    add_row(page, "address", '{"city": "London", "zip": 1}', "Object (JSON)")
    add_row(page, "signup", "2024-05-01T09:30", "Date")
    add_row(page, "nothing", "", "Null")
    add_row(page, "dropped", "x")
    page.locator("table.edit-props tbody tr").last.get_by_role("button", name="Remove this row").click()
    expect(page.get_by_role("button", name="+ Add Property")).to_be_focused()
    page.get_by_role("button", name="Save").click()

    expect(page).to_have_url(f"{server.url}/users/edit?distinct_id=ada-1&done=created")
    expect(page.get_by_role("status")).to_contain_text("Profile created.")
    props = stored(db, project["id"], "ada-1")
    assert props == {
        "$email": "ada@example.com",
        "$phone": "+14155550123",
        "age": 36,
        "score": 9.5,
        "vip": True,
        "tags": ["a", "b"],
        "address": {"city": "London", "zip": 1},
        "signup": "2024-05-01T09:30:00",
        "nothing": None,
    }
    assert type(props["age"]) is int and type(props["score"]) is float and props["vip"] is True
    # The page now edits the stored profile: update mode, its values in their types.
    expect(page.get_by_label("Update an existing profile")).to_be_checked()
    expect(page.get_by_label("Value of age")).to_have_value("36")
    expect(page.get_by_label("Type of age")).to_have_value("number")
    expect(page.get_by_label("Type of signup")).to_have_value("date")
    axe(page)
    page.get_by_role("link", name="View profile").click()
    expect(page).to_have_url(f"{server.url}/users/profile?distinct_id=ada-1")
    expect(page.locator("table.props tr", has_text="vip").locator("td.type")).to_have_text("boolean")


def test_create_mode_on_an_existing_profile_warns_and_changes_nothing(
    server: Any, project: dict[str, Any], signed_in: Page, db: Db, axe: Callable[[Page], None]
) -> None:
    engage(server.url, [{"$token": project["token"], "$distinct_id": "u1", "$set": {"plan": "pro"}}])
    page = signed_in
    page.goto(f"{server.url}/users/edit")
    page.get_by_label("$distinct_id (required)").fill("u1")
    fill_first(page, "plan", "free")
    page.get_by_role("button", name="Save").click()
    alert = page.get_by_role("alert")
    expect(alert).to_have_text(
        "A profile with $distinct_id u1 exists already: nothing was changed. "
        "Choose “Update an existing profile” to change it."
    )
    # The form is kept as it was typed.
    expect(page.get_by_label("$distinct_id (required)")).to_have_value("u1")
    expect(page.get_by_label("$distinct_id (required)")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Property name")).to_have_value("plan")
    expect(page.get_by_label("Value of plan")).to_have_value("free")
    expect(page.get_by_label("Create a new profile")).to_be_checked()
    assert stored(db, project["id"], "u1") == {"plan": "pro"}
    axe(page)
    # The same form in update mode applies.
    page.get_by_label("Update an existing profile").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Changes saved.")
    assert stored(db, project["id"], "u1") == {"plan": "free"}


def test_update_mode_on_a_missing_profile_warns(
    server: Any, project: dict[str, Any], signed_in: Page, db: Db, axe: Callable[[Page], None]
) -> None:
    page = signed_in
    page.goto(f"{server.url}/users/edit")
    page.get_by_label("Update an existing profile").check()
    page.get_by_label("$distinct_id (required)").fill("ghost")
    fill_first(page, "plan", "pro")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_have_text(
        "No profile has $distinct_id ghost: nothing was changed. Choose “Create a new profile” to create it."
    )
    expect(page.get_by_label("Update an existing profile")).to_be_checked()
    expect(page.get_by_label("Value of plan")).to_have_value("pro")
    assert count_profiles(db, project["id"]) == 0
    axe(page)


def test_edit_a_value_and_unset_a_property(
    server: Any, project: dict[str, Any], signed_in: Page, db: Db, axe: Callable[[Page], None]
) -> None:
    engage(
        server.url,
        [
            {
                "$token": project["token"],
                "$distinct_id": "u1",
                "$set": {"$name": "Ann", "plan": "pro", "logins": 3, "city": "Paris"},
            }
        ],
    )
    before = db.execute(
        "SELECT prop_times FROM profiles WHERE project_id = %s AND distinct_id = 'u1'", (project["id"],)
    ).fetchone()
    assert before is not None
    page = signed_in
    page.goto(f"{server.url}/users/profile?distinct_id=u1")
    page.get_by_role("link", name="Edit").click()
    expect(page).to_have_url(f"{server.url}/users/edit?distinct_id=u1")
    expect(page.get_by_label("Update an existing profile")).to_be_checked()
    expect(page.get_by_label("Value of plan")).to_have_value("pro")
    expect(page.get_by_label("Value of logins")).to_have_value("3")
    axe(page)
    screenshot(page, "edit")
    page.get_by_label("Value of plan").fill("enterprise")
    page.get_by_label("Unset city").check()
    page.get_by_label("Value of logins").press("Enter")  # Enter saves (not "Add Property")
    expect(page).to_have_url(f"{server.url}/users/edit?distinct_id=u1&done=updated")
    expect(page.get_by_role("status")).to_contain_text("Changes saved.")
    assert stored(db, project["id"], "u1") == {"$name": "Ann", "plan": "enterprise", "logins": 3}
    after = db.execute(
        "SELECT prop_times FROM profiles WHERE project_id = %s AND distinct_id = 'u1'", (project["id"],)
    ).fetchone()
    assert after is not None
    # Only what changed was sent: the untouched properties keep the time of their last $set.
    assert after["prop_times"]["logins"] == before["prop_times"]["logins"]
    assert after["prop_times"]["plan"] != before["prop_times"]["plan"]
    expect(page.get_by_label("Unset city")).to_have_count(0)
    # Saving again with nothing changed changes nothing.
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Nothing to change: the values are those stored.")
    axe(page)


def test_delete_needs_the_confirmation(
    server: Any,
    project: dict[str, Any],
    signed_in: Page,
    context: BrowserContext,
    db: Db,
    axe: Callable[[Page], None],
) -> None:
    engage(server.url, [{"$token": project["token"], "$distinct_id": "u1", "$set": {"plan": "pro"}}])
    track(server.url, [{"event": "Visit", "properties": {"token": project["token"], "distinct_id": "u1"}}])
    page = signed_in
    page.goto(f"{server.url}/users/edit?distinct_id=u1")
    page.get_by_role("button", name="Delete profile").click()  # the box is not ticked: the browser stops it
    expect(page).to_have_url(f"{server.url}/users/edit?distinct_id=u1")
    assert stored(db, project["id"], "u1") == {"plan": "pro"}
    # Without the browser's check, the server refuses too.
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    csrf = page.locator("meta[name=csrf-token]").get_attribute("content")
    with httpx.Client(base_url=server.url, cookies=cookies) as client:
        r = client.post("/users/edit/delete", data={"csrf": csrf, "type": "user", "id": "u1"})
    assert r.status_code == 400 and "Tick “I understand” to delete the profile" in r.text
    assert stored(db, project["id"], "u1") == {"plan": "pro"}

    page.get_by_label(re.compile("I understand")).check()
    page.get_by_role("button", name="Delete profile").click()
    expect(page).to_have_url(f"{server.url}/users/edit?deleted=u1")
    expect(page.get_by_role("status")).to_have_text("Profile u1 deleted.")
    assert stored(db, project["id"], "u1") is None
    axe(page)
    # The events stay: the profile page says there is no profile.
    page.goto(f"{server.url}/users/profile?distinct_id=u1")
    expect(page.get_by_text("No profile: only events")).to_be_visible()


def test_group_profile_create_edit_and_delete(
    server: Any, project: dict[str, Any], signed_in: Page, db: Db, axe: Callable[[Page], None]
) -> None:
    page = signed_in
    page.goto(f"{server.url}/users/edit")
    page.get_by_label("Group", exact=True).check()
    expect(page.get_by_label("$group_id (required)")).to_be_visible()
    page.get_by_label("Group key").fill("company")
    page.get_by_label("$group_id (required)").fill("acme")
    fill_first(page, "$name", "Acme Inc")
    add_row(page, "seats", "40", "Number")
    axe(page)
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(
        f"{server.url}/users/edit?type=group&group_key=company&group_id=acme&done=created"
    )
    expect(page.get_by_role("status")).to_have_text("Profile created.")
    assert stored_group(db, project["id"], "company", "acme") == {"$name": "Acme Inc", "seats": 40}
    assert count_profiles(db, project["id"]) == 0  # not a user profile

    expect(page.get_by_label("Group key")).to_have_value("company")
    expect(page.get_by_label("Value of seats")).to_have_value("40")
    page.get_by_label("Value of seats").fill("45")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Changes saved.")
    assert stored_group(db, project["id"], "company", "acme") == {"$name": "Acme Inc", "seats": 45}
    # The known group keys are offered.
    page.goto(f"{server.url}/users/edit")
    expect(page.locator("datalist#known-group-keys option[value=company]")).to_have_count(1)

    page.goto(f"{server.url}/users/edit?type=group&group_key=company&group_id=acme")
    page.get_by_label(re.compile("I understand")).check()
    page.get_by_role("button", name="Delete profile").click()
    expect(page.get_by_role("status")).to_have_text("Profile acme deleted.")
    assert stored_group(db, project["id"], "company", "acme") is None
    axe(page)


def test_autocomplete_offers_known_and_reserved_names(
    server: Any, project: dict[str, Any], signed_in: Page
) -> None:
    engage(
        server.url, [{"$token": project["token"], "$distinct_id": "u1", "$set": {"favorite_color": "blue"}}]
    )
    page = signed_in
    page.goto(f"{server.url}/users/edit")
    name = page.get_by_label("Property name")
    expect(name).to_have_attribute("list", "known-names")
    options = page.locator("datalist#known-names option")
    values = options.evaluate_all("os => os.map(o => o.value)")
    assert values[:6] == ["$email", "$first_name", "$last_name", "$name", "$phone", "$avatar"]
    assert "favorite_color" in values
    expect(page.locator("datalist#known-names option[value='$phone']")).to_have_attribute(
        "label", "Phone number, + and the country code first"
    )
    # The input offers the name as typed (Chromium's datalist matching is the browser's; the list is ours).
    name.fill("favo")
    matching = page.evaluate(
        "() => [...document.querySelectorAll('#known-names option')]"
        ".map(o => o.value).filter(v => v.startsWith('favo'))"
    )
    assert matching == ["favorite_color"]


def test_validation_errors_name_the_field_and_keep_the_form(
    server: Any,
    project: dict[str, Any],
    signed_in: Page,
    context: BrowserContext,
    db: Db,
    axe: Callable[[Page], None],
) -> None:
    page = signed_in
    page.goto(f"{server.url}/users/edit")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_have_text("$distinct_id is required")
    page.get_by_label("$distinct_id (required)").fill("v1")
    fill_first(page, "$phone", "4155550123")
    add_row(page, "age", "forty", "Number")
    add_row(page, "big", json.dumps(["x" * 1000] * 300), "List (JSON)")
    page.get_by_role("button", name="Save").click()
    alert = page.get_by_role("alert")
    expect(alert.locator("li")).to_have_text(
        [
            "$phone: a + and the country code must precede the number, e.g. +14155550123",
            "age: must be a number, e.g. 42, -7 or 3.14",
        ]
    )
    expect(page.get_by_label("Value of age")).to_have_value("forty")
    expect(page.get_by_label("Value of age")).to_have_attribute("aria-invalid", "true")
    axe(page)
    # Past the page's own rules, the pipeline's: a list over the value limit, named by its property.
    page.get_by_label("Value of $phone").fill("+14155550123")
    page.get_by_label("Value of age").fill("40")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_have_text("big: a list or object value is at most 256000 bytes")
    assert stored(db, project["id"], "v1") is None
    # A number /engage would not store exactly, and a property name over 255 characters (past the field's
    # maxlength, so sent as a script would).
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    csrf = page.locator("meta[name=csrf-token]").get_attribute("content")
    form = {"csrf": csrf, "type": "user", "mode": "create", "id": "v1"}
    with httpx.Client(base_url=server.url, cookies=cookies) as client:
        r = client.post(
            "/users/edit", data={**form, "p-0-name": "n", "p-0-type": "number", "p-0-value": "1" * 30}
        )
        assert r.status_code == 400 and "n: " in r.text and "exactly" in r.text, r.text
        r = client.post("/users/edit", data={**form, "p-0-name": "x" * 256, "p-0-value": "1"})
        assert r.status_code == 400
        assert "property names must be at most 255 characters" in r.text
        # An id Postgres cannot hold: the pipeline's rule, on the page.
        assert client.get("/users/edit", params={"distinct_id": "a\x00b"}).status_code == 200
        r = client.post("/users/edit", data={**form, "id": "a\x00b", "p-0-name": "n", "p-0-value": "1"})
        assert r.status_code == 400 and "$distinct_id: must not contain a NUL character" in r.text
        # A failure inside a list names the property, and its row is marked.
        r = client.post(
            "/users/edit", data={**form, "p-0-name": "t", "p-0-type": "list", "p-0-value": "[1e400]"}
        )
        assert r.status_code == 400 and "t[0]: the number 1e400 cannot be stored exactly" in r.text
        assert '<tr class="bad">' in r.text
        assert stored(db, project["id"], "v1") is None
        # Values the profile's size limit leaves out are named; the rest of the change is saved.
        r = client.post("/users/edit", data={**form, "id": "v2", "p-0-name": "a", "p-0-value": "x" * 600_000})
        assert r.status_code == 303
        update = {**form, "id": "v2", "mode": "update", "p-0-name": "b", "p-0-value": "y" * 600_000}
        r = client.post("/users/edit", data={**update, "p-1-name": "c", "p-1-value": "small"})
        assert r.status_code == 200
        assert (
            "b: not stored: the profile would be over the limit of 1000000 bytes; the rest was saved."
            in r.text
        )
    assert stored(db, project["id"], "v2") == {"a": "x" * 600_000, "c": "small"}


def test_the_form_works_without_javascript(
    server: Any, project: dict[str, Any], browser: Browser, db: Db
) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = sign_in(context, server.url, project["api_secret"])
        page.goto(f"{server.url}/users/edit")
        page.get_by_label("$distinct_id (required)").fill("nojs")
        fill_first(page, "plan", "pro")
        page.get_by_role("button", name="+ Add Property").click()  # the server adds the row
        rows = page.locator("table.edit-props tbody tr")
        expect(rows).to_have_count(2)
        expect(page.get_by_label("Value of plan")).to_have_value("pro")
        rows.last.get_by_label("Property name").fill("seats")
        rows.last.get_by_label("Type of the new property").select_option("number")
        rows.last.get_by_label("Value of the new property").fill("2")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status")).to_contain_text("Profile created.")
        assert stored(db, project["id"], "nojs") == {"plan": "pro", "seats": 2}
    finally:
        context.close()


def test_posts_without_the_csrf_token_are_refused(
    server: Any, project: dict[str, Any], signed_in: Page, context: BrowserContext, db: Db
) -> None:
    engage(server.url, [{"$token": project["token"], "$distinct_id": "u1", "$set": {"plan": "pro"}}])
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    with httpx.Client(base_url=server.url, cookies=cookies) as client:
        r = client.post("/users/edit", data={"mode": "create", "id": "x", "p-0-name": "a", "p-0-value": "1"})
        assert r.status_code == 403 and "CSRF" in r.text
        r = client.post("/users/edit/delete", data={"id": "u1", "confirm": "yes", "csrf": "wrong"})
        assert r.status_code == 403
    assert stored(db, project["id"], "x") is None
    assert stored(db, project["id"], "u1") == {"plan": "pro"}
