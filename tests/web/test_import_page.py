"""The "Import from CSV" wizard in Chromium: upload, the preview (columns, samples, detected types), the
choices (columns, properties, types, mode, cohort, profile type, dry run), the job followed to its end, its
summary and warnings (CSV), and the rows it leaves in the database; Cancel, no JavaScript, CSRF, isolation
between projects, axe."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
from playwright.sync_api import Browser, BrowserContext, Page, expect
from web_support import make_project, screenshot, sign_in

from support import profiles_of

DB = psycopg.Connection[dict[str, Any]]
DONE_TIMEOUT = 30_000  # ms: a job runs in a process of its own

PEOPLE = (
    "distinct_id,Email,age,zip,plan,score,notes\n"
    "u1,ann@example.com,31,02139,pro,10,hello\n"
    "u2,bob@example.com,40,10001,free,20,world\n"
    "u3,cy@example.com,22,94103,pro,30,again\n"
)


def write_csv(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def upload(page: Page, base_url: str, path: Path) -> int:
    """The file uploaded through the form; the draft's id (from the setup page's address)."""
    page.goto(f"{base_url}/users/import")
    page.get_by_label("CSV file").set_input_files(str(path))
    page.get_by_role("button", name="Upload and preview").click()
    expect(page).to_have_url(re.compile(r"/users/import/\d+/setup$"))
    found = re.search(r"/users/import/(\d+)/setup$", page.url)
    assert found is not None
    return int(found.group(1))


def preview_of(page: Page) -> list[tuple[str, list[str], str, str]]:
    """(column, sample values, detected type, suggested property) of each row of the preview."""
    shown = []
    for row in page.locator("table.import-columns tbody tr").all():
        detected = row.locator("select option").first.inner_text()
        shown.append(
            (
                row.locator("th").inner_text().strip(),
                row.locator(".samples .chip").all_inner_texts(),
                detected.removeprefix("Detected: "),
                row.locator("input[list]").input_value(),
            )
        )
    return shown


def wait_done(page: Page) -> None:
    expect(page.locator("[data-import-state]")).to_have_text("done", timeout=DONE_TIMEOUT)
    expect(page.locator("progress")).to_have_attribute("value", "100")


def summary_of(page: Page) -> dict[str, str]:
    table = page.locator("table.import-summary tbody tr")
    return {r.locator("th").inner_text().strip(): r.locator("td").inner_text() for r in table.all()}


def warnings_of(page: Page) -> list[list[str]]:
    return [r.locator("td").all_inner_texts() for r in page.locator("table.import-warnings tbody tr").all()]


def jobs_of(db: DB, project_id: int) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT id, state, source, upload_path FROM import_jobs WHERE project_id = %s ORDER BY id",
        (project_id,),
    ).fetchall()


def test_import_users_with_choices_a_cohort_and_then_exists_warnings(
    server: Any,
    project: dict[str, Any],
    signed_in: Page,
    db: DB,
    tmp_path: Path,
    axe: Callable[[Page], None],
) -> None:
    page = signed_in
    page.goto(f"{server.url}/users/import")
    expect(page.get_by_text("No imports yet in this project.")).to_be_visible()
    axe(page)
    file = write_csv(tmp_path, "people.csv", PEOPLE)
    job_id = upload(page, server.url, file)
    [draft] = jobs_of(db, project["id"])
    assert (draft["id"], draft["state"], draft["source"]) == (job_id, "draft", "web")
    assert Path(draft["upload_path"]).read_text() == PEOPLE

    expect(page.get_by_role("heading", name="Choose what to import")).to_be_visible()
    expect(page.locator("p.sub").first).to_contain_text("3 rows previewed")
    expect(page.locator("p.sub").first).to_contain_text("a header row · 7 columns")
    assert preview_of(page) == [
        ("distinct_id", ["u1", "u2", "u3"], "string", "$distinct_id"),
        ("Email", ["ann@example.com", "bob@example.com", "cy@example.com"], "string", "$email"),
        ("age", ["31", "40", "22"], "integer", "age"),
        ("zip", ["02139", "10001", "94103"], "string", "zip"),  # a zip code stays text
        ("plan", ["pro", "free", "pro"], "string", "plan"),
        ("score", ["10", "20", "30"], "integer", "score"),
        ("notes", ["hello", "world", "again"], "string", "notes"),
    ]
    expect(page.get_by_label("Which column identifies each profile")).to_have_value("")
    expect(page.get_by_label("Which column identifies each profile").locator("option").first).to_have_text(
        "Automatic: column 'distinct_id' ($distinct_id)"
    )
    axe(page)
    screenshot(page, "import-setup")

    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if r.url.endswith("/status.json") else None)
    page.get_by_label("notes", exact=True).uncheck()
    page.get_by_label("Property of plan").fill("tier")
    page.get_by_label("Type of score").select_option("string")
    page.get_by_label("Create only").check()
    page.get_by_label("Make a static cohort of the imported profiles").fill("From the wizard")
    page.get_by_role("button", name="Import profiles").click()
    expect(page).to_have_url(f"{server.url}/users/import/{job_id}")
    wait_done(page)
    expect(page.get_by_role("status")).to_contain_text("Import finished.")
    assert summary_of(page) == {
        "Rows read": "3",
        "Created": "3",
        "Updated": "0",
        "Unchanged": "0",
        "Skipped": "0",
    }
    expect(page.locator("[data-import-rows]")).to_have_text(re.compile(r"^3 of 3 rows · [\d,]+ rows/s$"))
    expect(page.get_by_text("None.")).to_be_visible()  # no warnings
    expect(page.locator("p.sub", has_text="Identifier:")).to_have_text(
        "Identifier: column 'distinct_id' ($distinct_id). Columns: Email → $email (string), age → age"
        " (integer), zip → zip (string), plan → tier (string), score → score (string)."
    )
    # The job process takes longer to start than the page to load: import.js followed it, then reloaded.
    assert polls and set(polls) == {f"{server.url}/users/import/{job_id}/status.json"}
    status = page.request.get(f"{server.url}/users/import/{job_id}/status.json").json()
    assert {k: v for k, v in status.items() if k not in ("rows_per_second", "summary")} == {
        "state": "done",
        "rows_done": 3,
        "rows_total": 3,
        "error": None,
        "percent": 100,
    }
    assert (status["summary"]["created"], status["summary"]["mode"]) == (3, "create")
    axe(page)
    screenshot(page, "import-job")

    assert profiles_of(db, project["id"]) == {
        f"u{i}": {
            "properties": {"$email": email, "age": age, "zip": zip_code, "tier": tier, "score": score},
            "last_seen": None,
        }
        for i, email, age, zip_code, tier, score in [
            (1, "ann@example.com", 31, "02139", "pro", "10"),
            (2, "bob@example.com", 40, "10001", "free", "20"),
            (3, "cy@example.com", 22, "94103", "pro", "30"),
        ]
    }
    cohort = db.execute(
        "SELECT id, is_static FROM cohorts WHERE project_id = %s AND name = 'From the wizard'",
        (project["id"],),
    ).fetchone()
    assert cohort is not None and cohort["is_static"]
    members = db.execute(
        "SELECT distinct_id FROM cohort_members WHERE cohort_id = %s ORDER BY 1", (cohort["id"],)
    ).fetchall()
    assert [m["distinct_id"] for m in members] == ["u1", "u2", "u3"]
    page.goto(f"{server.url}/users/import/{job_id}/setup")  # started: no second start, its page instead
    expect(page).to_have_url(f"{server.url}/users/import/{job_id}")
    page.get_by_role("link", name="the cohort").click()
    expect(page).to_have_url(f"{server.url}/users?cohort={cohort['id']}")
    expect(page.locator(".count-value")).to_have_text("3 matches")
    assert [(j["state"], j["upload_path"]) for j in jobs_of(db, project["id"])] == [("done", None)]
    assert not Path(draft["upload_path"]).exists()  # the job's process deleted its upload

    # The same file again, create only: every row exists already.
    again = upload(page, server.url, file)
    page.get_by_label("Create only").check()
    page.get_by_role("button", name="Import profiles").click()
    expect(page).to_have_url(f"{server.url}/users/import/{again}")
    wait_done(page)
    assert summary_of(page) == {
        "Rows read": "3",
        "Created": "0",
        "Updated": "0",
        "Unchanged": "0",
        "Skipped": "3",
        "skipped: exists": "3",
    }
    exists = [
        [str(n), "exists", f"line {n}: $distinct_id 'u{n - 1}' already has a profile (create mode); skipped"]
        for n in (2, 3, 4)
    ]
    assert warnings_of(page) == exists
    expect(page.get_by_role("heading", name="Warnings")).to_have_text("Warnings 3")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download all warnings (CSV)").click()
    assert download.value.suggested_filename == f"import-{again}-warnings.csv"
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows == [["line", "kind", "column", "message"]] + [[n, k, "", m] for n, k, m in exists]
    # Nothing changed; the recent imports list both.
    assert [p["properties"]["tier"] for p in profiles_of(db, project["id"]).values()] == [
        "pro",
        "free",
        "pro",
    ]
    page.goto(f"{server.url}/users/import")
    recent = page.locator("table.imports tbody tr")
    expect(recent).to_have_count(2)
    expect(recent.first.locator("th")).to_contain_text(f"#{again}")
    expect(recent.first.locator("td").nth(0)).to_have_text("done")
    expect(recent.nth(1).locator("td").nth(2)).to_have_text("3")  # created
    axe(page)


def test_group_profiles_and_a_refused_choice_keeps_the_input(
    server: Any,
    project: dict[str, Any],
    signed_in: Page,
    db: DB,
    tmp_path: Path,
    axe: Callable[[Page], None],
) -> None:
    page = signed_in
    file = write_csv(
        tmp_path, "companies.csv", "company,Name,employees,notes\nacme,Acme Inc,120,x\nglobex,Globex,45,y\n"
    )
    job_id = upload(page, server.url, file)
    page.get_by_role("radio", name="Group profiles").check()
    page.get_by_label("Property of employees").fill("staff")
    page.get_by_label("notes", exact=True).uncheck()
    page.get_by_role("button", name="Import profiles").click()
    # No group key: refused on the same page, the choices kept, the draft still a draft.
    expect(page.get_by_role("alert")).to_have_text("group_key: String should have at least 1 character")
    expect(page.get_by_role("radio", name="Group profiles")).to_be_checked()
    expect(page.get_by_label("Property of employees")).to_have_value("staff")
    expect(page.get_by_label("notes", exact=True)).not_to_be_checked()
    expect(page.get_by_label("Name", exact=True)).to_be_checked()
    axe(page)
    assert [j["state"] for j in jobs_of(db, project["id"])] == ["draft"]

    page.get_by_label("Group key").fill("company")
    page.get_by_role("button", name="Import profiles").click()
    expect(page).to_have_url(f"{server.url}/users/import/{job_id}")
    wait_done(page)
    assert summary_of(page)["Created"] == "2"
    expect(page.get_by_text("Identifier: column 'company' (the group key)")).to_be_visible()
    rows = db.execute(
        "SELECT group_key, group_id, properties FROM group_profiles WHERE project_id = %s ORDER BY group_id",
        (project["id"],),
    ).fetchall()
    assert rows == [
        {
            "group_key": "company",
            "group_id": "acme",
            "properties": {"company": "acme", "$name": "Acme Inc", "staff": 120},
        },
        {
            "group_key": "company",
            "group_id": "globex",
            "properties": {"company": "globex", "$name": "Globex", "staff": 45},
        },
    ]
    assert profiles_of(db, project["id"]) == {}


def test_a_dry_run_reports_a_ragged_line_and_writes_nothing(
    server: Any, project: dict[str, Any], signed_in: Page, db: DB, tmp_path: Path
) -> None:
    """A dry run reads, checks and counts everything: the ragged line's warning names its line."""
    page = signed_in
    file = write_csv(tmp_path, "ragged.csv", "distinct_id,plan,age\nu1,pro,3\nu2,free,4,extra\nu3,pro,5\n")
    upload(page, server.url, file)
    page.get_by_label("Dry run").check()
    page.get_by_label("Make a static cohort of the imported profiles").fill("Never made")
    page.get_by_role("button", name="Import profiles").click()
    wait_done(page)
    expect(page.get_by_role("status")).to_contain_text("Dry run finished: nothing was written.")
    assert summary_of(page) == {
        "Rows read": "3",
        "Created": "2",
        "Updated": "0",
        "Unchanged": "0",
        "Skipped": "1",
        "skipped: ragged": "1",
    }
    assert warnings_of(page) == [["3", "ragged", "line 3: 4 cells where the header has 3; skipped"]]
    assert profiles_of(db, project["id"]) == {}
    cohorts = db.execute("SELECT count(*) AS n FROM cohorts WHERE project_id = %s", (project["id"],))
    assert cohorts.fetchone() == {"n": 0}


def test_a_file_the_import_cannot_read_is_refused_on_the_upload_page(
    server: Any, project: dict[str, Any], signed_in: Page, db: DB, tmp_path: Path, axe: Callable[[Page], None]
) -> None:
    page = signed_in
    for name, content, reason in [
        ("empty.csv", b"\n\n", "the file is empty"),
        (
            "utf16.csv",
            "distinct_id,plan\nu1,pro\nu2,free\nu3,pro\n".encode("utf-16"),
            "the file is not text (it holds NUL bytes: a binary file, or UTF-16 text; save it as UTF-8 CSV)",
        ),
    ]:
        path = tmp_path / name
        path.write_bytes(content)
        page.goto(f"{server.url}/users/import")
        page.get_by_label("CSV file").set_input_files(str(path))
        page.get_by_role("button", name="Upload and preview").click()
        expect(page.get_by_role("alert")).to_have_text(f"The file was not uploaded: {reason}.")
        expect(page).to_have_url(f"{server.url}/users/import")
    axe(page)
    csrf = page.locator("meta[name=csrf-token]").get_attribute("content")
    r = page.request.post(f"{server.url}/users/import", multipart={"csrf": str(csrf)})  # no file
    assert r.status == 400 and "The file was not uploaded: choose a CSV file to upload." in r.text()
    assert jobs_of(db, project["id"]) == []


def test_cancel_discards_the_draft(
    server: Any, project: dict[str, Any], signed_in: Page, db: DB, tmp_path: Path
) -> None:
    page = signed_in
    job_id = upload(page, server.url, write_csv(tmp_path, "people.csv", PEOPLE))
    [draft] = jobs_of(db, project["id"])
    assert draft["id"] == job_id and Path(draft["upload_path"]).exists()
    page.goto(f"{server.url}/users/import/{job_id}")  # a draft's page is its setup
    expect(page).to_have_url(f"{server.url}/users/import/{job_id}/setup")
    page.get_by_role("button", name="Cancel and discard the upload").click()
    expect(page).to_have_url(f"{server.url}/users/import")
    assert jobs_of(db, project["id"]) == []
    assert not Path(draft["upload_path"]).exists()
    expect(page.get_by_text("No imports yet in this project.")).to_be_visible()
    gone = page.goto(f"{server.url}/users/import/{job_id}/setup")
    assert gone is not None and gone.status == 404
    expect(page.get_by_text(f"no import {job_id} in this project")).to_be_visible()


def test_the_wizard_works_without_javascript(
    browser: Browser, server: Any, project: dict[str, Any], db: DB, tmp_path: Path
) -> None:
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    try:
        page = sign_in(context, server.url, project["api_secret"])
        statuses: list[str] = []
        page.on("request", lambda r: statuses.append(r.url) if r.url.endswith("status.json") else None)
        job_id = upload(page, server.url, write_csv(tmp_path, "people.csv", PEOPLE))
        page.get_by_label("age", exact=True).uncheck()
        page.get_by_label("Type of zip").select_option("number")
        page.get_by_role("button", name="Import profiles").click()
        expect(page).to_have_url(f"{server.url}/users/import/{job_id}")
        wait_done(page)  # the page refreshes itself until then
        assert statuses == []
        assert summary_of(page)["Created"] == "3"
        stored = profiles_of(db, project["id"])
        assert stored["u1"]["properties"] == {
            "$email": "ann@example.com",
            "zip": 2139,
            "plan": "pro",
            "score": 10,
            "notes": "hello",
        }
    finally:
        context.close()


def test_the_upload_and_the_start_need_the_csrf_token(
    server: Any, project: dict[str, Any], context: BrowserContext, signed_in: Page, db: DB, tmp_path: Path
) -> None:
    write_csv(tmp_path, "people.csv", PEOPLE)
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    files = {"file": ("people.csv", PEOPLE.encode(), "text/csv")}
    with httpx.Client(base_url=server.url, cookies=cookies) as client:
        for data in ({"csrf": "forged"}, {}):
            r = client.post("/users/import", data=data, files=files)
            assert r.status_code == 403 and "text/html" in r.headers["content-type"]
            assert "CSRF" in r.text
        assert jobs_of(db, project["id"]) == []
        draft = upload(signed_in, server.url, tmp_path / "people.csv")
        r = client.post(f"/users/import/{draft}/setup", data={"csrf": "forged", "use_0": "1"})
        assert r.status_code == 403
        r = client.post(f"/users/import/{draft}/discard", data={})
        assert r.status_code == 403
    assert [(j["id"], j["state"]) for j in jobs_of(db, project["id"])] == [(draft, "draft")]


def test_another_projects_session_gets_404(
    browser: Browser, server: Any, database_url: str, db: DB, tmp_path: Path
) -> None:
    a, b = make_project(database_url), make_project(database_url)
    ctx_a = browser.new_context()
    ctx_b = browser.new_context()
    try:
        page_a = sign_in(ctx_a, server.url, a["api_secret"])
        draft = upload(page_a, server.url, write_csv(tmp_path, "people.csv", PEOPLE))
        page_b = sign_in(ctx_b, server.url, b["api_secret"])
        csrf_b = page_b.locator("meta[name=csrf-token]").get_attribute("content")
        cookies = {c["name"]: c["value"] for c in ctx_b.cookies()}
        with httpx.Client(base_url=server.url, cookies=cookies) as client:
            for path in ("", "/setup", "/status.json", "/warnings.csv"):
                r = client.get(f"/users/import/{draft}{path}")
                assert r.status_code == 404, (path, r.status_code)
                assert f"no import {draft} in this project" in r.text
            r = client.post(f"/users/import/{draft}/setup", data={"csrf": csrf_b, "use_0": "1"})
            assert r.status_code == 404
            r = client.post(f"/users/import/{draft}/discard", data={"csrf": csrf_b})
            assert r.status_code == 404
        assert [j["state"] for j in jobs_of(db, a["id"])] == ["draft"]  # B's Cancel did not touch it
        assert jobs_of(db, b["id"]) == []
        page_b.goto(f"{server.url}/users/import/{draft}/setup")
        expect(page_b.get_by_text(f"no import {draft} in this project")).to_be_visible()
    finally:
        ctx_a.close()
        ctx_b.close()
