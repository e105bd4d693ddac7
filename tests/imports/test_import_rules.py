"""An import's rules end to end on Postgres (run in this process as the command runs it, jobs.execute): modes,
identifiers, group profiles, types as stored in jsonb, duplicates within and across chunks, re-runs, newer
/engage updates, cohorts, dry runs, and the rows and warnings each leaves."""

from __future__ import annotations

import gzip
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from import_support import (
    DB,
    Project,
    counts,
    group_props,
    last_job,
    messages_of,
    outcome,
    props,
    run_import,
    stored_state,
    typed,
    warnings_of,
    write,
)

from profilestore.imports.reading import FileError

EXISTING = "distinct_id,plan,seats\nu1,free,1\n"
FILE = "distinct_id,plan,seats\nu1,pro,\nu2,free,2\n"


@pytest.fixture
def existing(database_url: str, project: Project, tmp_path: Path) -> Project:
    """A project holding u1 {plan: free, seats: 1}."""
    run_import(database_url, project, write(tmp_path, "existing.csv", EXISTING))
    return project


# ---- modes ------------------------------------------------------------------------------------------------


def test_upsert_updates_and_creates(database_url: str, existing: Project, db: DB, tmp_path: Path) -> None:
    job_id, summary = run_import(database_url, existing, write(tmp_path, "f.csv", FILE), mode="upsert")
    assert counts(summary) == outcome(rows=2, created=1, updated=1)
    assert props(db, existing) == {"u1": {"plan": "pro", "seats": 1}, "u2": {"plan": "free", "seats": 2}}
    assert warnings_of(db, job_id) == []


def test_create_skips_existing_profiles(database_url: str, existing: Project, db: DB, tmp_path: Path) -> None:
    job_id, summary = run_import(database_url, existing, write(tmp_path, "f.csv", FILE), mode="create")
    assert counts(summary) == outcome(rows=2, created=1, skipped={"exists": 1}, warnings={"exists": 1})
    assert props(db, existing) == {"u1": {"plan": "free", "seats": 1}, "u2": {"plan": "free", "seats": 2}}
    assert warnings_of(db, job_id) == [(2, "exists", None)]
    assert messages_of(db, job_id) == [
        "line 2: $distinct_id 'u1' already has a profile (create mode); skipped"
    ]


def test_update_skips_missing_profiles(database_url: str, existing: Project, db: DB, tmp_path: Path) -> None:
    job_id, summary = run_import(database_url, existing, write(tmp_path, "f.csv", FILE), mode="update")
    assert counts(summary) == outcome(rows=2, updated=1, skipped={"missing": 1}, warnings={"missing": 1})
    assert props(db, existing) == {"u1": {"plan": "pro", "seats": 1}}
    assert warnings_of(db, job_id) == [(3, "missing", None)]
    assert messages_of(db, job_id) == ["line 3: $distinct_id 'u2' has no profile (update mode); skipped"]


def test_create_mode_keeps_a_profile_the_file_itself_made(
    database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    """`exists` means: there before the import.  A repeat in the file merges (later wins), in or across
    chunks."""
    data = "distinct_id,a,b\nn1,1,x\nn2,1,\nn3,1,\nn4,1,\nn1,2,\nn2,,y\n"
    job_id, summary = run_import(
        database_url, project, write(tmp_path, "f.csv", data), {"import_chunk_rows": 3}, mode="create"
    )
    assert counts(summary) == outcome(rows=6, created=4, updated=2, warnings={"duplicate": 2})
    assert warnings_of(db, job_id) == [(6, "duplicate", None), (7, "duplicate", None)]
    assert props(db, project) == {
        "n1": {"a": 2, "b": "x"},
        "n2": {"a": 1, "b": "y"},
        "n3": {"a": 1},
        "n4": {"a": 1},
    }


# ---- identifiers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "options", "expected", "rule"),
    [
        (
            "Email,distinct_id,plan\na@x.com,u1,pro\n",
            {},
            {"u1": {"$email": "a@x.com", "plan": "pro"}},
            "column 'distinct_id' ($distinct_id)",
        ),
        ("$distinct_id,plan\nu1,pro\n", {}, {"u1": {"plan": "pro"}}, "column '$distinct_id' ($distinct_id)"),
        (
            "user,Email\nu1,a@x.com\n",
            {"id_column": "user"},
            {"u1": {"user": "u1", "$email": "a@x.com"}},
            "column 'user'",
        ),
        (
            "user,plan\nu1,pro\n",
            {"map": ["user=$distinct_id"]},
            {"u1": {"plan": "pro"}},
            "column 'user' ($distinct_id)",
        ),
        (
            "E-mail,First Name\na@x.com,Ann\n",
            {},
            {"a@x.com": {"$email": "a@x.com", "$first_name": "Ann"}},
            "column 'E-mail' ($email)",
        ),
    ],
)
def test_identifier_rules(
    database_url: str,
    project: Project,
    db: DB,
    tmp_path: Path,
    data: str,
    options: dict[str, Any],
    expected: dict[str, Any],
    rule: str,
) -> None:
    _, summary = run_import(database_url, project, write(tmp_path, "f.csv", data), **options)
    assert summary["identifier"] == rule
    assert props(db, project) == expected


def test_a_random_uuid_per_row_without_an_identifier(
    database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    _, summary = run_import(database_url, project, write(tmp_path, "f.csv", "plan,seats\npro,1\npro,1\n"))
    assert summary["identifier"] == "a random UUID per row (no identifier or $email column)"
    found = props(db, project)
    assert len(found) == 2
    assert all(str(uuid.UUID(k)) == k for k in found)
    assert list(found.values()) == [{"plan": "pro", "seats": 1}] * 2


# ---- group profiles ---------------------------------------------------------------------------------------


def test_group_profiles(database_url: str, project: Project, db: DB, tmp_path: Path) -> None:
    data = "company,plan,seats\nacme,pro,3\nglobex,free,\n,x,1\n"
    job_id, summary = run_import(database_url, project, write(tmp_path, "g.csv", data), group_key="company")
    assert summary["profile_type"] == "group"
    assert summary["identifier"] == "column 'company' (the group key)"
    assert counts(summary) == outcome(rows=3, created=2, skipped={"empty_id": 1}, warnings={"empty_id": 1})
    assert warnings_of(db, job_id) == [(4, "empty_id", "company")]
    assert group_props(db, project) == {
        ("company", "acme"): {"company": "acme", "plan": "pro", "seats": 3},
        ("company", "globex"): {"company": "globex", "plan": "free"},
    }
    assert props(db, project) == {}


def test_group_profiles_by_group_id_in_each_mode(
    database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    run_import(
        database_url, project, write(tmp_path, "a.csv", "$group_id,plan\nacme,free\n"), group_key="company"
    )
    data = write(tmp_path, "b.csv", "$group_id,plan\nacme,pro\ninitech,pro\n")
    job_id, summary = run_import(database_url, project, data, group_key="company", mode="create")
    assert counts(summary) == outcome(rows=2, created=1, skipped={"exists": 1}, warnings={"exists": 1})
    assert messages_of(db, job_id) == [
        "line 2: $group_id 'acme' already has a profile (create mode); skipped"
    ]
    job_id, summary = run_import(database_url, project, data, group_key="other", mode="update")
    assert counts(summary) == outcome(rows=2, skipped={"missing": 2}, warnings={"missing": 2})
    _, summary = run_import(database_url, project, data, group_key="company", mode="update")
    assert counts(summary) == outcome(rows=2, updated=1, unchanged=1)
    assert group_props(db, project) == {
        ("company", "acme"): {"plan": "pro"},
        ("company", "initech"): {"plan": "pro"},
    }


# ---- columns and types ------------------------------------------------------------------------------------

TYPES_FILE = (
    "distinct_id,age,zip,score,big,vip,joined,seen,tags,meta,exp,nan,mixed,bad_day,deep,nul,huge_num\n"
    'u1,31,02139,1.5,12345.678901234567890,TRUE,2024-01-02,2024-01-02T10:00:00+02:00,"[1,""a""]",'
    '"{""plan"":""pro""}",1e3,NaN,42,2024-02-30,[[[[1]]]],"[""\\u0000""]",[123456789012345678901234567890]\n'
    "u2,-4,10001,-0.25,0,false,2024-03-04 05:06,2024-06-30T23:30:00-05:00,[],{},2,3,x,2024-02-29,[1],[],[1]\n"
)


def test_types_are_inferred_per_column_and_stored_exactly(
    database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    _, summary = run_import(database_url, project, write(tmp_path, "t.csv", TYPES_FILE))
    assert {c["column"]: c["type"] for c in summary["columns"]} == {
        "age": "integer",
        "zip": "string",
        "score": "decimal",
        "big": "decimal",
        "vip": "boolean",
        "joined": "datetime",
        "seen": "datetime",
        "tags": "list",
        "meta": "object",
        "exp": "string",
        "nan": "string",
        "mixed": "string",
        "bad_day": "string",
        "deep": "string",
        "nul": "string",
        "huge_num": "string",
    }
    assert typed(db, project, "u1") == {
        "age": ("number", "31"),
        "zip": ("string", '"02139"'),
        "score": ("number", "1.5"),
        "big": ("number", "12345.678901234567890"),
        "vip": ("boolean", "true"),
        "joined": ("string", '"2024-01-02T00:00:00"'),
        "seen": ("string", '"2024-01-02T08:00:00"'),
        "tags": ("array", '[1, "a"]'),
        "meta": ("object", '{"plan": "pro"}'),
        "exp": ("string", '"1e3"'),
        "nan": ("string", '"NaN"'),
        "mixed": ("string", '"42"'),
        "bad_day": ("string", '"2024-02-30"'),
        "deep": ("string", '"[[[[1]]]]"'),
        "nul": ("string", '"[\\"\\\\u0000\\"]"'),
        "huge_num": ("string", '"[123456789012345678901234567890]"'),
    }
    assert typed(db, project, "u2") == {
        "age": ("number", "-4"),
        "zip": ("string", '"10001"'),
        "score": ("number", "-0.25"),
        "big": ("number", "0"),
        "vip": ("boolean", "false"),
        "joined": ("string", '"2024-03-04T05:06:00"'),
        "seen": ("string", '"2024-07-01T04:30:00"'),
        "tags": ("array", "[]"),
        "meta": ("object", "{}"),
        "exp": ("string", '"2"'),
        "nan": ("string", '"3"'),
        "mixed": ("string", '"x"'),
        "bad_day": ("string", '"2024-02-29"'),
        "deep": ("string", '"[1]"'),
        "nul": ("string", '"[]"'),
        "huge_num": ("string", '"[1]"'),
    }


def test_types_string_keeps_every_cell_as_text(
    database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    _, summary = run_import(database_url, project, write(tmp_path, "t.csv", TYPES_FILE), types="string")
    assert {c["type"] for c in summary["columns"]} == {"string"}
    stored = typed(db, project, "u2")
    assert {t for t, _ in stored.values()} == {"string"}
    assert stored["age"] == ("string", '"-4"')
    assert stored["seen"] == ("string", '"2024-06-30T23:30:00-05:00"')


def test_forced_types_and_a_bad_forced_value(
    database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    data = (
        "id,score,born,flag,meta,zip,secret\n"
        "q1,1e3,2020-01-01T10:00:00+01:00,yes,{},02139,s1\n"  # flag: not a boolean
        'q2, 7 ,2020-01-02,TRUE,"{""a"": [1]}",10001,s2\n'
        "q3,12,2020-13-01,false,{},,s3\n"  # born: no month 13
        "q4,2.50,,,,00501,\n"
    )
    job_id, summary = run_import(
        database_url,
        project,
        write(tmp_path, "f.csv", data),
        id_column="id",
        map=[
            "score=points:number",
            "born=born:datetime",
            "flag=flag:boolean",
            "meta=meta:object",
            "zip=zip:number",
        ],
        skip=["secret"],
    )
    assert [(c["column"], c["property"], c["type"]) for c in summary["columns"]] == [
        ("id", "id", "string"),
        ("score", "points", "number"),
        ("born", "born", "datetime"),
        ("flag", "flag", "boolean"),
        ("meta", "meta", "object"),
        ("zip", "zip", "number"),
    ]
    assert counts(summary) == outcome(rows=4, created=2, skipped={"bad_value": 2}, warnings={"bad_value": 2})
    assert warnings_of(db, job_id) == [(2, "bad_value", "flag"), (4, "bad_value", "born")]
    assert messages_of(db, job_id) == [
        "line 2, column 'flag': 'yes' is not true or false; skipped",
        "line 4, column 'born': '2020-13-01' is not a valid date or datetime; skipped",
    ]
    assert typed(db, project, "q2") == {
        "id": ("string", '"q2"'),
        "points": ("number", "7"),
        "born": ("string", '"2020-01-02T00:00:00"'),
        "flag": ("boolean", "true"),
        "meta": ("object", '{"a": [1]}'),
        "zip": ("number", "10001"),
    }
    assert typed(db, project, "q4") == {
        "id": ("string", '"q4"'),
        "points": ("number", "2.50"),
        "zip": ("number", "501"),
    }


def test_a_file_without_header(database_url: str, project: Project, db: DB, tmp_path: Path) -> None:
    data = "u1,31,pro\nu2,32\nu3,33,free\n"
    job_id, summary = run_import(
        database_url,
        project,
        write(tmp_path, "f.csv", data),
        header=False,
        columns=["distinct_id", "age", "plan"],
    )
    assert counts(summary) == outcome(rows=3, created=2, skipped={"ragged": 1}, warnings={"ragged": 1})
    assert warnings_of(db, job_id) == [(2, "ragged", None)]
    assert props(db, project) == {"u1": {"age": 31, "plan": "pro"}, "u3": {"age": 33, "plan": "free"}}


@pytest.mark.parametrize(
    ("data", "options"),
    [
        ("distinct_id\tnote\tn\nu1\ta, b; c\t1\nu2\tx\t2\n", {}),  # tabs, detected
        ("distinct_id|note|n\nu1|a, b; c|1\nu2|x|2\n", {"delimiter": "|"}),
    ],
    ids=["tab", "pipe"],
)
def test_other_delimiters(
    database_url: str, project: Project, db: DB, tmp_path: Path, data: str, options: dict[str, Any]
) -> None:
    run_import(database_url, project, write(tmp_path, "f.txt", data), **options)
    assert props(db, project) == {"u1": {"note": "a, b; c", "n": 1}, "u2": {"note": "x", "n": 2}}


def test_a_gzip_file_cut_short(database_url: str, project: Project, db: DB, tmp_path: Path) -> None:
    """The rows before the cut are imported; the rest is one `file` problem (so the command exits 3)."""
    rows = "".join(f"u{i},{uuid.UUID(int=i * 7919).hex}\n" for i in range(4000))
    packed = gzip.compress(f"distinct_id,key\n{rows}".encode())
    path = write(tmp_path, "cut.csv.gz", packed[: len(packed) * 3 // 4])
    job_id, summary = run_import(database_url, project, path)
    read = len(props(db, project))
    assert 2000 < read < 4000
    assert counts(summary) == outcome(rows=read + 1, created=read, skipped={"file": 1}, warnings={"file": 1})
    assert warnings_of(db, job_id) == [(read + 2, "file", None)]
    assert props(db, project)[f"u{read - 1}"] == {"key": uuid.UUID(int=(read - 1) * 7919).hex}


def test_reserved_names_phone_warning_and_last_seen_column(
    database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    data = (
        "distinct_id,First Name,Last Name,Phone,Avatar,Created,$last_seen\n"
        "u1,Ann,Lee,+14155550100,https://x/a.png,2024-01-02,2024-05-05\n"
        "u2,Bob,,415 555 0100,,,\n"
    )
    job_id, summary = run_import(database_url, project, write(tmp_path, "f.csv", data))
    assert counts(summary) == outcome(rows=2, created=2, warnings={"phone": 1})
    assert warnings_of(db, job_id) == [(3, "phone", "Phone")]
    assert summary["notes"] == [
        "column '$last_seen' sets $last_seen, which the service maintains: not imported"
    ]
    assert props(db, project) == {
        "u1": {
            "$first_name": "Ann",
            "$last_name": "Lee",
            "$phone": "+14155550100",
            "$avatar": "https://x/a.png",
            "$created": "2024-01-02T00:00:00",
        },
        "u2": {"$first_name": "Bob", "$phone": "415 555 0100"},
    }
    assert db.execute(
        "SELECT count(*) AS n FROM profiles WHERE project_id = %s AND last_seen IS NOT NULL", (project["id"],)
    ).fetchone() == {"n": 0}


def test_a_cell_over_the_limit_skips_its_row(
    database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    data = "distinct_id,note\nu1,short\nu2," + "é" * 30 + "\nu3,ok\n"
    job_id, summary = run_import(
        database_url, project, write(tmp_path, "f.csv", data), {"max_import_cell_bytes": 50}
    )
    assert counts(summary) == outcome(rows=3, created=2, skipped={"too_large": 1}, warnings={"too_large": 1})
    assert messages_of(db, job_id) == ["line 3, column 'note': a cell over 50 bytes; skipped"]
    assert props(db, project) == {"u1": {"note": "short"}, "u3": {"note": "ok"}}


# ---- duplicates and chunks --------------------------------------------------------------------------------

DUPLICATES = "distinct_id,a,b\nd1,1,x\nd2,2,\nd1,3,\nd3,4,y\nd4,5,z\nd1,6,\nd2,,w\nd5,7,\n"


@pytest.mark.parametrize("chunk_rows", [3, 20_000])
def test_a_repeated_identifier_later_row_wins(
    database_url: str, project: Project, db: DB, tmp_path: Path, chunk_rows: int
) -> None:
    """Chunks of 3 identifiers: d1 repeats within the first chunk (line 4) and in the next (line 7), d2 in the
    next (line 8). The same warnings and profiles as in one chunk."""
    job_id, summary = run_import(
        database_url, project, write(tmp_path, "d.csv", DUPLICATES), {"import_chunk_rows": chunk_rows}
    )
    assert counts(summary) == outcome(rows=8, created=5, updated=3, warnings={"duplicate": 3})
    assert messages_of(db, job_id) == [
        "line 4: $distinct_id 'd1' is also on line 2; the later values win",
        "line 7: $distinct_id 'd1' is also on line 4; the later values win",
        "line 8: $distinct_id 'd2' is also on line 3; the later values win",
    ]
    assert props(db, project) == {
        "d1": {"a": 6, "b": "x"},
        "d2": {"a": 2, "b": "w"},
        "d3": {"a": 4, "b": "y"},
        "d4": {"a": 5, "b": "z"},
        "d5": {"a": 7},
    }


def test_chunk_boundaries_lose_no_row(database_url: str, project: Project, db: DB, tmp_path: Path) -> None:
    """Ten rows, chunks of 3 identifiers, a skipped row on a boundary: every row is accounted for."""
    lines = [f"c{i},{i}" for i in range(1, 11)]
    lines[3] = ",4"  # line 5: no identifier
    job_id, summary = run_import(
        database_url,
        project,
        write(tmp_path, "c.csv", "distinct_id,n\n" + "\n".join(lines) + "\n"),
        {"import_chunk_rows": 3},
    )
    assert counts(summary) == outcome(rows=10, created=9, skipped={"empty_id": 1}, warnings={"empty_id": 1})
    assert warnings_of(db, job_id) == [(5, "empty_id", "distinct_id")]
    assert props(db, project) == {f"c{i}": {"n": i} for i in range(1, 11) if i != 4}
    assert last_job(db, project)["summary"]["rows"] == 10


# ---- re-running -------------------------------------------------------------------------------------------


def test_running_the_same_import_again_changes_nothing(
    database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    data = (
        "distinct_id,plan,seats,tags,when\n"
        "r1,pro,3,[1],2024-01-02T10:00:00Z\n"
        "r2,free,,[],\n"
        "r1,,4,,\n"  # a repeat within the chunk
        "r3,pro,1,,\n"
        "r4,x,,,\n"
        "r2,,2,,\n"  # a repeat in the next chunk, adding a value
    )
    path = write(tmp_path, "r.csv", data)
    _, first = run_import(database_url, project, path, {"import_chunk_rows": 3}, cohort="again")
    before = stored_state(db, project)
    assert counts(first) == outcome(rows=6, created=4, updated=2, warnings={"duplicate": 2})
    time.sleep(0.01)
    job_id, second = run_import(database_url, project, path, {"import_chunk_rows": 3}, cohort="again")
    assert counts(second) == outcome(rows=6, unchanged=6, warnings={"duplicate": 2})
    assert warnings_of(db, job_id) == [(4, "duplicate", None), (7, "duplicate", None)]
    assert stored_state(db, project) == before
    assert second["cohort_id"] == first["cohort_id"]


# ---- newer updates ----------------------------------------------------------------------------------------


def test_a_newer_engage_update_wins_over_the_import(
    client: httpx.Client, database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    """/engage updates stamped after the import's start ($set, $unset): the import leaves those properties and
    says so, and sets the rest."""
    later = time.time() + 600
    records = [
        {"$token": project["token"], "$distinct_id": "u1", "$time": later, "$set": {"plan": "enterprise"}},
        {"$token": project["token"], "$distinct_id": "u1", "$time": later, "$unset": ["seats"]},
        {
            "$token": project["token"],
            "$distinct_id": "u1",
            "$time": time.time() - 60,
            "$set": {"town": "Oslo"},
        },
    ]
    assert client.post("/engage", json=records).text == "1"
    data = "distinct_id,plan,seats,town,tier\nu1,pro,5,Paris,gold\nu2,pro,5,Rome,\n"
    job_id, summary = run_import(database_url, project, write(tmp_path, "n.csv", data))
    assert counts(summary) == outcome(rows=2, created=1, updated=1, warnings={"newer_value": 2})
    assert warnings_of(db, job_id) == [(2, "newer_value", None), (2, "newer_value", None)]
    assert messages_of(db, job_id) == [
        "line 2: 'plan' of 'u1' was not changed: an update newer than this import's start is kept",
        "line 2: 'seats' of 'u1' was not changed: an update newer than this import's start is kept",
    ]
    assert props(db, project) == {
        "u1": {"plan": "enterprise", "town": "Paris", "tier": "gold"},  # town: older than the import
        "u2": {"plan": "pro", "seats": 5, "town": "Rome"},
    }


def test_an_import_does_not_touch_last_seen(
    client: httpx.Client, database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    record = {"$token": project["token"], "$distinct_id": "u1", "$time": 1_700_000_000, "$set": {"a": 1}}
    assert client.post("/engage", json=[record]).text == "1"
    run_import(database_url, project, write(tmp_path, "f.csv", "distinct_id,a\nu1,2\nu2,3\n"))
    rows = db.execute(
        "SELECT distinct_id, extract(epoch FROM last_seen)::float8 AS seen FROM profiles"
        " WHERE project_id = %s ORDER BY 1",
        (project["id"],),
    ).fetchall()
    assert rows == [{"distinct_id": "u1", "seen": 1_700_000_000.0}, {"distinct_id": "u2", "seen": None}]
    assert props(db, project) == {"u1": {"a": 2}, "u2": {"a": 3}}


# ---- cohorts and dry runs ---------------------------------------------------------------------------------


def members(db: DB, cohort_id: int) -> list[str]:
    rows = db.execute(
        "SELECT distinct_id FROM cohort_members WHERE cohort_id = %s ORDER BY 1", (cohort_id,)
    ).fetchall()
    return [r["distinct_id"] for r in rows]


def test_a_static_cohort_of_the_imported_profiles(
    database_url: str, existing: Project, db: DB, tmp_path: Path
) -> None:
    data = write(tmp_path, "c.csv", "distinct_id,plan\nu1,pro\nu2,pro\n,pro\nu3,pro\n")
    _, summary = run_import(database_url, existing, data, mode="create", cohort="Imported in May")
    cohort_id = summary["cohort_id"]
    assert members(db, cohort_id) == ["u2", "u3"]  # not u1 (skipped: exists), not the row without id
    cohort = db.execute(
        "SELECT project_id, name, is_static FROM cohorts WHERE id = %s", (cohort_id,)
    ).fetchone()
    assert cohort == {"project_id": existing["id"], "name": "Imported in May", "is_static": True}
    _, again = run_import(database_url, existing, data, mode="upsert", cohort="Imported in May")
    assert again["cohort_id"] == cohort_id
    assert members(db, cohort_id) == ["u1", "u2", "u3"]
    assert db.execute(
        "SELECT count(*) AS n FROM cohorts WHERE project_id = %s", (existing["id"],)
    ).fetchone() == {"n": 1}


def test_a_dynamic_cohort_of_that_name_is_not_touched(
    database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    db.execute(
        "INSERT INTO cohorts (project_id, name, definition, is_static) VALUES (%s, 'vips', '{}', false)",
        (project["id"],),
    )
    with pytest.raises(FileError, match="cohort 'vips' exists and is not static; choose another name"):
        run_import(database_url, project, write(tmp_path, "c.csv", "distinct_id\nu1\n"), cohort="vips")
    assert props(db, project) == {}
    job = last_job(db, project)
    assert (job["state"], job["error"]) == (
        "failed",
        "cohort 'vips' exists and is not static; choose another name",
    )


def test_a_dry_run_writes_no_profile(database_url: str, existing: Project, db: DB, tmp_path: Path) -> None:
    before = stored_state(db, existing)
    data = write(tmp_path, "f.csv", "distinct_id,plan,seats\nu1,pro,\nu2,free,2\nu3,x,y,z\nu1,free,3\n")
    job_id, summary = run_import(database_url, existing, data, dry_run=True, cohort="never")
    assert summary["dry_run"] is True
    assert counts(summary) == outcome(
        rows=4, created=1, updated=2, skipped={"ragged": 1}, warnings={"duplicate": 1, "ragged": 1}
    )
    assert warnings_of(db, job_id) == [(4, "ragged", None), (5, "duplicate", None)]
    assert stored_state(db, existing) == before
    assert summary["cohort_id"] is None
    assert db.execute(
        "SELECT count(*) AS n FROM cohorts WHERE project_id = %s", (existing["id"],)
    ).fetchone() == {"n": 0}
    data = write(tmp_path, "g.csv", "distinct_id,plan\nu1,pro\nu2,free\n")
    job_id, create = run_import(database_url, existing, data, dry_run=True, mode="create")
    assert counts(create) == outcome(rows=2, created=1, skipped={"exists": 1}, warnings={"exists": 1})
    assert warnings_of(db, job_id) == [(2, "exists", None)]
    assert stored_state(db, existing) == before


# ---- the job ----------------------------------------------------------------------------------------------


def test_the_job_row(database_url: str, project: Project, db: DB, tmp_path: Path) -> None:
    job_id, summary = run_import(database_url, project, write(tmp_path, "f.csv", "distinct_id,a\nu1,1\n"))
    job = last_job(db, project)
    assert (job["id"], job["state"], job["source"], job["error"]) == (job_id, "done", "cli", None)
    assert job["summary"] == summary
    assert summary["mode"] == "upsert" and summary["profile_type"] == "user"
    assert summary["columns"] == [{"column": "a", "property": "a", "type": "integer"}]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"\n\n", "the file is empty"),
        (b"\x00\x01\x02\x03" * 100, "the file is not text (it holds NUL bytes"),
        (b"a,b\n", None),  # a header only: nothing to do, and fine
    ],
)
def test_files_with_nothing_to_import(
    database_url: str, project: Project, db: DB, tmp_path: Path, data: bytes, message: str | None
) -> None:
    path = write(tmp_path, "f.csv", data)
    if message is None:
        _, summary = run_import(database_url, project, path)
        assert counts(summary) == outcome(rows=0)
        assert last_job(db, project)["state"] == "done"
        return
    with pytest.raises(FileError) as caught:
        run_import(database_url, project, path)
    assert caught.value.message.startswith(message)
    job = last_job(db, project)
    assert job["state"] == "failed" and job["error"].startswith(message)
