"""The CSV import's HTTP API (docs/import.md) over real HTTP: previews, import jobs followed to their end with
the stored profiles, summaries and warnings they leave, and refusals (options, credentials, sizes, jobs).
Jobs run in processes of their own (`python -m profilestore.imports ID`), as the server starts them."""

from __future__ import annotations

import gzip
from typing import Any

import httpx
import psycopg
import pytest
from api_support import PREVIEW, csv_bytes, run, secret_of, start, warnings_csv

from support import profiles_of

DB = psycopg.Connection[dict[str, Any]]


def preview(client: httpx.Client, project: dict[str, Any], body: bytes, **params: Any) -> httpx.Response:
    return client.post(PREVIEW, params=params, content=body, auth=secret_of(project))


def column(index: int, name: str, samples: list[str], kind: str, prop: str) -> dict[str, Any]:
    return {"index": index, "name": name, "samples": samples, "type": kind, "property": prop}


# ---- preview ----------------------------------------------------------------------------------------------


def test_preview_of_a_semicolon_file(client: httpx.Client, project: dict[str, Any]) -> None:
    """Delimiter and header detected; each column's samples, inferred type and suggested property."""
    body = csv_bytes(
        [
            ["user id", "E-mail", "First Name", "zip", "age", "score", "vip", "joined", "tags", "meta"],
            ["u1", "ann@example.com", "Ann", "02139", "31", "1.5", "true", "2024-01-02", "[1,2]", '{"a":1}'],
            ["u2", "bob@example.com", "Bob", "10001", "-4", "2", "FALSE", "2024-02-03T10:00:00Z", "[]", "{}"],
            ["u3", "", "Cy", "94103", "0", "-0.25", "true", "2024-03-04 05:06", '["x"]', '{"b":[]}'],
        ],
        delimiter=";",
    )
    r = preview(client, project, body)
    assert r.status_code == 200, r.text
    assert r.headers.get("connection") != "close"  # the whole body was read: the connection stays
    assert r.json() == {
        "delimiter": ";",
        "header": True,
        "encoding": "utf-8",
        "rows_sampled": 3,
        "columns": [
            column(0, "user id", ["u1", "u2", "u3"], "string", "user id"),
            column(1, "E-mail", ["ann@example.com", "bob@example.com"], "string", "$email"),
            column(2, "First Name", ["Ann", "Bob", "Cy"], "string", "$first_name"),
            column(3, "zip", ["02139", "10001", "94103"], "string", "zip"),
            column(4, "age", ["31", "-4", "0"], "integer", "age"),
            column(5, "score", ["1.5", "2", "-0.25"], "decimal", "score"),
            column(6, "vip", ["true", "FALSE", "true"], "boolean", "vip"),
            column(
                7, "joined", ["2024-01-02", "2024-02-03T10:00:00Z", "2024-03-04 05:06"], "datetime", "joined"
            ),
            column(8, "tags", ["[1,2]", "[]", '["x"]'], "list", "tags"),
            column(9, "meta", ['{"a":1}', "{}", '{"b":[]}'], "object", "meta"),
        ],
        "identifier_column": "E-mail",
        "identifier": "column 'E-mail' ($email)",
        "suggested_mapping": {
            "user id": "user id",
            "E-mail": "$email",
            "First Name": "$first_name",
            "zip": "zip",
            "age": "age",
            "score": "score",
            "vip": "vip",
            "joined": "joined",
            "tags": "tags",
            "meta": "meta",
        },
        "problems": [],
    }
    # The options the import would take change the identifier the preview shows.
    r = preview(client, project, body, id_column="user id", map="zip=postal:number")
    assert (r.json()["identifier_column"], r.json()["identifier"]) == ("user id", "column 'user id'")


def test_preview_of_a_tab_file_without_a_header(client: httpx.Client, project: dict[str, Any]) -> None:
    body = b"u1\t31\tann@example.com\nu2\t40\tbob@example.com\nu3\t22\tcy@example.com\n"
    answer = preview(client, project, body).json()
    assert (answer["delimiter"], answer["header"], answer["rows_sampled"]) == ("\t", False, 3)
    assert [(c["name"], c["type"], c["samples"][0]) for c in answer["columns"]] == [
        ("column 1", "string", "u1"),
        ("column 2", "integer", "31"),
        ("column 3", "string", "ann@example.com"),
    ]
    assert answer["identifier"] == "a random UUID per row (no identifier or $email column)"
    # Named columns, as the import would take them.
    answer = preview(client, project, body, header="false", columns="distinct_id,age,Email").json()
    assert [c["name"] for c in answer["columns"]] == ["distinct_id", "age", "Email"]
    assert answer["suggested_mapping"] == {"distinct_id": "$distinct_id", "age": "age", "Email": "$email"}
    assert answer["identifier_column"] == "distinct_id"
    # A header given wins over the guess: the first row is then the column names.
    answer = preview(client, project, body, header="true").json()
    assert (answer["header"], answer["rows_sampled"]) == (True, 2)
    assert [c["name"] for c in answer["columns"]] == ["u1", "31", "ann@example.com"]


def test_preview_takes_a_first_row_naming_reserved_properties_for_a_header(
    client: httpx.Client, project: dict[str, Any]
) -> None:
    """Text columns of varied lengths give csv.Sniffer nothing to vote on; `email` names `$email`."""
    body = b"email,plan\nann@x.com,pro\nbob@example.com,free\n"
    answer = preview(client, project, body).json()
    assert (answer["header"], answer["rows_sampled"], answer["identifier_column"]) == (True, 2, "email")
    # A value that starts with `$` names no reserved property.
    assert preview(client, project, b"ann,$5.00\nbob,$17.50\ncy,$0.75\n").json()["header"] is False
    # Names given with `columns` replace the header's, as in the import.
    answer = preview(client, project, body, columns="distinct_id,tier").json()
    assert answer["suggested_mapping"] == {"distinct_id": "$distinct_id", "tier": "tier"}
    assert answer["columns"][1]["samples"] == ["pro", "free"]


def test_preview_samples_at_most_20_non_empty_values(client: httpx.Client, project: dict[str, Any]) -> None:
    rows = [["id", "plan", "note"]] + [[f"u{i}", "" if i % 3 == 0 else f"p{i}", ""] for i in range(1, 61)]
    answer = preview(client, project, csv_bytes(rows)).json()
    assert answer["rows_sampled"] == 60
    by_name = {c["name"]: c for c in answer["columns"]}
    assert by_name["id"]["samples"] == [f"u{i}" for i in range(1, 21)]
    assert by_name["plan"]["samples"] == [f"p{i}" for i in range(1, 31) if i % 3][:20]
    assert by_name["note"] == column(2, "note", [], "string", "note")


def test_preview_names_the_rows_it_cannot_read(client: httpx.Client, project: dict[str, Any]) -> None:
    body = b"id,name\nu1,Ann\nu2,J\xe9r\xf4me\nu3,Cy\n"
    answer = preview(client, project, body).json()
    assert answer["rows_sampled"] == 2
    assert answer["problems"] == [
        {
            "line": 3,
            "kind": "encoding",
            "message": "line 3: not valid utf-8 (byte 0xe9 at byte 5 of the line); skipped (save the file as"
            " UTF-8, or give its encoding)",
        }
    ]
    answer = preview(client, project, body, encoding="latin-1").json()
    assert (answer["encoding"], answer["problems"]) == ("iso8859-1", [])
    assert answer["columns"][1]["samples"] == ["Ann", "Jérôme", "Cy"]


@pytest.mark.parametrize(
    ("body", "params", "detail"),
    [
        (b"", {}, "the file is empty"),
        (b" \r\n\n", {}, "the file is empty"),
        (
            b"\x00\x01\x02\x03" * 100,
            {},
            "the file is not text (it holds NUL bytes: a binary file, or UTF-16 text; save it as UTF-8 CSV)",
        ),
        (
            "id,name\nu1,Ann\n".encode("utf-16"),
            {},
            "the file is not text (it holds NUL bytes: a binary file, or UTF-16 text; save it as UTF-8 CSV)",
        ),
        (b"\x1f\x8b\x08\x00garbage", {}, "the file cannot be decompressed: the gzip stream ends too early"),
        (
            gzip.compress(b"id\nu1\n")[:10] + b"\xff" * 20,
            {},
            "the file cannot be decompressed: Error -3 while decompressing data: invalid block type",
        ),
        (b"id\nu1\n", {"delimiter": ";;"}, "delimiter: Value error, must be one character, not a quote"),
        (b"id\nu1\n", {"sample": "10"}, "sample: not an import option (the options: cohort, columns,"),
    ],
)
def test_preview_refuses(
    client: httpx.Client, project: dict[str, Any], body: bytes, params: dict[str, str], detail: str
) -> None:
    r = preview(client, project, body, **params)
    assert r.status_code == 400
    assert r.json()["error"] == "BadRequest" and r.json()["detail"].startswith(detail), r.json()


# ---- import jobs ------------------------------------------------------------------------------------------

PEOPLE = (
    b"distinct_id,Email,First Name,zip,age,vip,Phone,plan\n"
    b"u1,ann@example.com,Ann,02139,31,true,+15550001,pro\n"
    b"u2,bob@example.com,Bob,10001,40,false,5550002,free\n"
    b",nobody@example.com,Nobody,00000,1,true,,free\n"
    b"u3,cy@example.com,Cy,30301,22\n"
    b"u1,ann@new.example.com,Ann,02139,32,true,+15550001,pro\n"
    b'u4,dee@example.com,"Dee, Jr.",94103,,false,,"team, annual"\n'
    b"u5,eve@example.com,Eve,60601,50,maybe,,pro\n"
    b"u6,f\xe9e@example.com,Fee,73301,60,true,,pro\n"
)


def test_an_import_job_to_its_end(client: httpx.Client, project: dict[str, Any], db: DB) -> None:
    """Every good row stored exactly; every other row named by its line, in the summary, the first warnings
    and warnings.csv; then an update-mode import of the same profiles."""
    done = run(client, project, PEOPLE, map="vip=is_vip:boolean")
    assert profiles_of(db, project["id"]) == {
        "u1": {
            "properties": {
                "$email": "ann@new.example.com",  # line 6 repeats u1: the later values win
                "$first_name": "Ann",
                "zip": "02139",
                "age": 32,
                "is_vip": True,
                "$phone": "+15550001",
                "plan": "pro",
            },
            "last_seen": None,
        },
        "u2": {
            "properties": {
                "$email": "bob@example.com",
                "$first_name": "Bob",
                "zip": "10001",
                "age": 40,
                "is_vip": False,
                "$phone": "5550002",
                "plan": "free",
            },
            "last_seen": None,
        },
        "u4": {
            "properties": {
                "$email": "dee@example.com",
                "$first_name": "Dee, Jr.",
                "zip": "94103",
                "is_vip": False,
                "plan": "team, annual",
            },
            "last_seen": None,
        },
    }
    assert (done["rows_done"], done["rows_total"]) == (8, 8)
    assert (done["bytes_done"], done["bytes_total"]) == (len(PEOPLE), len(PEOPLE))
    assert done["error"] is None and done["source"] == "api"
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]
    assert done["rows_per_second"] == done["summary"]["rows_per_second"] > 0
    summary = {k: v for k, v in done["summary"].items() if k not in ("seconds", "rows_per_second")}
    assert summary == {
        "mode": "upsert",
        "profile_type": "user",
        "dry_run": False,
        "identifier": "column 'distinct_id' ($distinct_id)",
        "rows": 8,
        "created": 3,
        "updated": 1,
        "unchanged": 0,
        "skipped": 4,
        "skipped_by_reason": {"bad_value": 1, "empty_id": 1, "encoding": 1, "ragged": 1},
        "warnings_by_kind": {
            "bad_value": 1,
            "duplicate": 1,
            "empty_id": 1,
            "encoding": 1,
            "phone": 1,
            "ragged": 1,
        },
        "columns": [
            {"column": "Email", "property": "$email", "type": "string"},
            {"column": "First Name", "property": "$first_name", "type": "string"},
            {"column": "zip", "property": "zip", "type": "string"},
            {"column": "age", "property": "age", "type": "integer"},
            {"column": "vip", "property": "is_vip", "type": "boolean"},
            {"column": "Phone", "property": "$phone", "type": "string"},
            {"column": "plan", "property": "plan", "type": "string"},
        ],
        "notes": [],
        "cohort_id": None,
    }
    expected = [
        [
            3,
            "phone",
            "Phone",
            "line 3, column 'Phone': '5550002' has no leading '+' (an international number needs one);"
            " imported as it is",
        ],
        [4, "empty_id", "distinct_id", "line 4: the identifier ('distinct_id') is empty; skipped"],
        [5, "ragged", None, "line 5: 5 cells where the header has 8; skipped"],
        [6, "duplicate", None, "line 6: $distinct_id 'u1' is also on line 2; the later values win"],
        [8, "bad_value", "vip", "line 8, column 'vip': 'maybe' is not true or false; skipped"],
        [
            9,
            "encoding",
            None,
            "line 9: not valid utf-8 (byte 0xe9 at byte 5 of the line); skipped (save the file as UTF-8, or"
            " give its encoding)",
        ],
    ]
    assert done["warnings_total"] == 6
    assert done["warnings"] == [
        dict(zip(("line", "kind", "column", "message"), w, strict=True)) for w in expected
    ]
    assert warnings_csv(client, project, done["id"]) == [["line", "kind", "column", "message"]] + [
        [str(line), kind, column or "", message] for line, kind, column, message in expected
    ]

    # update: only stored profiles change; an unknown one is skipped, one equal to the file is unchanged.
    again = run(
        client,
        project,
        b'distinct_id,plan,age\nu2,enterprise,41\nu9,free,1\nu4,"team, annual",\n',
        mode="update",
    )
    assert {k: again["summary"][k] for k in ("rows", "created", "updated", "unchanged", "skipped")} == {
        "rows": 3,
        "created": 0,
        "updated": 1,
        "unchanged": 1,
        "skipped": 1,
    }
    assert again["warnings"] == [
        {
            "line": 3,
            "kind": "missing",
            "column": None,
            "message": "line 3: $distinct_id 'u9' has no profile (update mode); skipped",
        }
    ]
    stored = profiles_of(db, project["id"])
    assert set(stored) == {"u1", "u2", "u4"}
    assert stored["u2"]["properties"] == {
        "$email": "bob@example.com",
        "$first_name": "Bob",
        "zip": "10001",
        "age": 41,
        "is_vip": False,
        "$phone": "5550002",
        "plan": "enterprise",
    }


def test_a_gzip_upload_is_read_by_its_magic_number(
    client: httpx.Client, project: dict[str, Any], db: DB
) -> None:
    plain = b"distinct_id,plan,seats\n" + b"".join(b"g%d,team,%d\n" % (i, i) for i in range(500))
    packed = gzip.compress(plain)
    # The preview reads it as the plain file (no Content-Encoding: the bytes say it).
    assert preview(client, project, packed).json() == preview(client, project, plain).json()
    done = run(client, project, packed)
    assert (done["summary"]["created"], done["warnings_total"]) == (500, 0)
    assert done["bytes_total"] == done["bytes_done"] == len(packed)
    stored = profiles_of(db, project["id"])
    assert len(stored) == 500
    assert stored["g7"]["properties"] == {"plan": "team", "seats": 7}


def test_group_profiles(client: httpx.Client, project: dict[str, Any], db: DB) -> None:
    body = b"company,Name,employees,founded\nacme,Acme Inc,120,1999-05-01\nglobex,Globex,4500,\n"
    done = run(client, project, body, group_key="company")
    assert done["summary"]["profile_type"] == "group"
    assert done["summary"]["identifier"] == "column 'company' (the group key)"
    rows = db.execute(
        "SELECT group_key, group_id, properties FROM group_profiles WHERE project_id = %s ORDER BY group_id",
        (project["id"],),
    ).fetchall()
    assert rows == [
        {
            "group_key": "company",
            "group_id": "acme",
            "properties": {
                "company": "acme",
                "$name": "Acme Inc",
                "employees": 120,
                "founded": "1999-05-01T00:00:00",
            },
        },
        {
            "group_key": "company",
            "group_id": "globex",
            "properties": {"company": "globex", "$name": "Globex", "employees": 4500},
        },
    ]
    assert profiles_of(db, project["id"]) == {}
    # A group import needs an identifier column: refused before any job is queued.
    r = start(client, project, b"Name,employees\nAcme,1\n", group_key="company")
    assert r.status_code == 400
    assert r.json() == {
        "error": "BadRequest",
        "detail": "group profiles need an identifier column: id_column, a $group_id column, or one named like"
        " the group key",
    }


def test_dry_run_and_cohort(client: httpx.Client, project: dict[str, Any], db: DB) -> None:
    """A dry run counts against the stored profiles and writes nothing; `cohort` makes a static cohort of
    the imported rows' profiles."""
    done = run(
        client, project, b"Email,plan\nann@example.com,pro\nbob@example.com,free\n", cohort="customers"
    )
    cohort = db.execute(
        "SELECT id, is_static, definition FROM cohorts WHERE project_id = %s AND name = 'customers'",
        (project["id"],),
    ).fetchone()
    assert cohort is not None and cohort["is_static"] and cohort["definition"] is None
    assert done["summary"]["cohort_id"] == cohort["id"]
    members = db.execute(
        "SELECT distinct_id FROM cohort_members WHERE cohort_id = %s ORDER BY 1", (cohort["id"],)
    ).fetchall()
    assert [m["distinct_id"] for m in members] == ["ann@example.com", "bob@example.com"]
    before = profiles_of(db, project["id"])
    assert before["ann@example.com"]["properties"] == {"$email": "ann@example.com", "plan": "pro"}

    dry = run(
        client,
        project,
        b"Email,plan\nann@example.com,team\nbob@example.com,free\ncy@example.com,pro\n",
        mode="create",
        dry_run="true",
    )
    assert {k: dry["summary"][k] for k in ("dry_run", "rows", "created", "updated", "skipped")} == {
        "dry_run": True,
        "rows": 3,
        "created": 1,
        "updated": 0,
        "skipped": 2,
    }
    assert [(w["line"], w["kind"]) for w in dry["warnings"]] == [(2, "exists"), (3, "exists")]
    assert profiles_of(db, project["id"]) == before
