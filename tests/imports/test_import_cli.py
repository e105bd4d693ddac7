"""`profilestore import-csv` run as a command (a process of its own, as a person runs it): exit statuses
(0 ok, 3 rows skipped unless --allow-skips, 1 an error, 2 bad options), what it prints, the --warnings file,
and the files it reads: standard input, gzip, other delimiters and encodings, no header, huge cells and
lines, broken files.  Never a traceback.  Independent commands run at once (each takes ~2 s to start)."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path
from typing import Any

from import_support import (
    DB,
    Project,
    cli,
    cli_many,
    counts,
    group_props,
    job_count,
    last_job,
    outcome,
    props,
    typed,
    warnings_of,
    write,
)

from support import new_project


def warnings_file(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def test_an_import_exits_0_and_prints_its_summary(
    database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    path = write(tmp_path, "people.csv", "distinct_id,Email,plan,age\nu1,a@x.com,pro,31\nu2,b@x.com,,42\n")
    ran = cli(
        database_url,
        str(path),
        "--token",
        project["token"],
        "--cohort",
        "From CSV",
        "--warnings",
        str(tmp_path / "w.csv"),
    )
    assert ran.rc == 0, ran.err
    job = last_job(db, project)
    assert (job["state"], job["source"]) == ("done", "cli")
    assert counts(job["summary"]) == outcome(rows=2, created=2)
    assert f"import {job['id']}: read 2 rows" in ran.err
    assert "identifier: column 'distinct_id' ($distinct_id)" in ran.err
    cohort_id = job["summary"]["cohort_id"]
    assert f"static cohort {cohort_id} holds the imported profiles" in ran.err
    assert ran.out == ""
    assert props(db, project) == {
        "u1": {"$email": "a@x.com", "plan": "pro", "age": 31},
        "u2": {"$email": "b@x.com", "age": 42},
    }
    assert warnings_file(tmp_path / "w.csv") == [["line", "kind", "column", "message"]]
    cohorts = db.execute("SELECT id, name, is_static FROM cohorts WHERE project_id = %s", (project["id"],))
    assert cohorts.fetchall() == [{"id": cohort_id, "name": "From CSV", "is_static": True}]
    found = db.execute("SELECT distinct_id FROM cohort_members WHERE cohort_id = %s ORDER BY 1", (cohort_id,))
    assert [r["distinct_id"] for r in found.fetchall()] == ["u1", "u2"]


MESSY = (
    b"\xef\xbb\xbfdistinct_id,Name,age,Phone,joined\r\n"
    b'u1,"Lee, Ann",31,+4930123,2024-01-02T10:00:00+02:00\r\n'
    b'u2,"two\r\nlines",32,030 1234,\r\n'  # lines 3-4; a phone without +
    b"u3,M\xfcller,33,,\r\n"  # 5: Latin-1, not UTF-8
    b'u4,"a\x00b",34,,\r\n'  # 6: a NUL
    b"u5,x,35\r\n"  # 7: ragged
    b",x,36,,\r\n"  # 8: no identifier
    b"u6,x,37,,2024-02-30\r\n"  # 9: no such day (joined is forced to datetime)
    b'u7,"open quote,38,,\r\n'  # 10: a quote open to the end of the file
    b"u8,y,39,,\r\n"
)
MESSY_WARNINGS = [
    ["line", "kind", "column", "message"],
    [
        "3",
        "phone",
        "Phone",
        "line 3, column 'Phone': '030 1234' has no leading '+' (an international number needs one);"
        " imported as it is",
    ],
    [
        "5",
        "encoding",
        "",
        "line 5: not valid utf-8 (byte 0xfc at byte 5 of the line); skipped (save the file as UTF-8, or give"
        " its encoding)",
    ],
    ["6", "nul", "", "line 6: a NUL character, which cannot be stored; skipped"],
    ["7", "ragged", "", "line 7: 3 cells where the header has 5; skipped"],
    ["8", "empty_id", "distinct_id", "line 8: the identifier ('distinct_id') is empty; skipped"],
    [
        "9",
        "bad_value",
        "joined",
        "line 9, column 'joined': '2024-02-30' is not a valid date or datetime; skipped",
    ],
    ["10", "malformed", "", "lines 10-11: a quote is still open at the end of the file; skipped"],
]


def test_a_messy_file_exits_3_with_every_warning(
    database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    """BOM, \\r\\n, quoted delimiters and newlines are read; each broken row costs only itself and is named
    by its line; exit 3 (rows skipped), or 0 with --allow-skips (the same import into another project)."""
    other = new_project(database_url)
    path = write(tmp_path, "messy.csv", MESSY)
    args = [str(path), "--map", "joined=joined:datetime"]
    ran, allowed = cli_many(
        database_url,
        [
            [*args, "--token", project["token"], "--warnings", str(tmp_path / "w.csv")],
            [*args, "--token", other["token"], "--allow-skips"],
        ],
    )
    assert (ran.rc, allowed.rc) == (3, 0), (ran.err, allowed.err)
    assert warnings_file(tmp_path / "w.csv") == MESSY_WARNINGS
    for row in MESSY_WARNINGS[1:]:
        assert f"  {row[3]}\n" in ran.err
    skipped = {"encoding": 1, "nul": 1, "ragged": 1, "empty_id": 1, "bad_value": 1, "malformed": 1}
    for p in (project, other):
        summary = last_job(db, p)["summary"]
        assert counts(summary) == outcome(
            rows=8, created=2, skipped=skipped, warnings={**skipped, "phone": 1}
        )
        assert props(db, p) == {
            "u1": {"$name": "Lee, Ann", "age": 31, "$phone": "+4930123", "joined": "2024-01-02T08:00:00"},
            "u2": {"$name": "two\r\nlines", "age": 32, "$phone": "030 1234"},
        }


def test_gzip_from_standard_input_and_from_a_file(
    database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    """`-` reads standard input (here gzip bytes: read by their magic number, whatever the name)."""
    other = new_project(database_url)
    packed = gzip.compress(b"distinct_id,n\nu1,1\nu2,2\n")
    from_stdin, from_file = cli_many(
        database_url,
        [
            ["-", "--token", project["token"]],
            [str(write(tmp_path, "people.csv.gz", packed)), "--token", other["token"]],
        ],
        stdin=packed,
    )
    assert (from_stdin.rc, from_file.rc) == (0, 0), (from_stdin.err, from_file.err)
    assert props(db, project) == props(db, other) == {"u1": {"n": 1}, "u2": {"n": 2}}


def test_a_semicolon_file_is_detected(database_url: str, project: Project, db: DB, tmp_path: Path) -> None:
    path = write(tmp_path, "semi.csv", "distinct_id;price;note\nu1;1,5;a, b\nu2;2;c\n")
    ran = cli(database_url, str(path), "--token", project["token"])
    assert ran.rc == 0, ran.err
    assert props(db, project) == {"u1": {"price": "1,5", "note": "a, b"}, "u2": {"price": "2", "note": "c"}}


def test_a_file_without_header_and_a_tab_delimiter(
    database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    path = write(tmp_path, "raw.txt", "u1\ta@x.com\t1.5\tx, y\nu2\tb@x.com\t2\t\n")
    ran = cli(
        database_url,
        str(path),
        "--token",
        project["token"],
        "--no-header",
        "--columns",
        "user, Email ,score,note",
        "--id-column",
        "user",
        "--delimiter",
        "\\t",  # what a shell passes for '\t'
    )
    assert ran.rc == 0, ran.err
    assert typed(db, project, "u1") == {
        "user": ("string", '"u1"'),
        "$email": ("string", '"a@x.com"'),
        "score": ("number", "1.5"),
        "note": ("string", '"x, y"'),
    }
    assert props(db, project)["u2"] == {"user": "u2", "$email": "b@x.com", "score": 2}


def test_latin1_read_when_named(database_url: str, project: Project, db: DB, tmp_path: Path) -> None:
    """(Read as UTF-8, such a line is skipped: the messy file's line 5.)"""
    path = write(tmp_path, "latin1.csv", "distinct_id,city_name\nu1,München\nu2,Paris\n".encode("latin-1"))
    ran = cli(database_url, str(path), "--token", project["token"], "--encoding", "latin-1")
    assert ran.rc == 0, ran.err
    assert props(db, project) == {"u1": {"city_name": "München"}, "u2": {"city_name": "Paris"}}


def test_a_10_mb_cell_costs_only_its_row(database_url: str, project: Project, db: DB, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w") as f:
        f.write("distinct_id,note,n\nu1,small,1\nu2,")
        f.write("x" * 10_000_000)
        f.write(",2\nu3,after,3\n")
    ran = cli(database_url, str(path), "--token", project["token"])
    assert ran.rc == 3, ran.err
    assert "  line 3, column 'note': a cell over 256000 bytes; skipped\n" in ran.err
    job = last_job(db, project)
    assert counts(job["summary"]) == outcome(
        rows=3, created=2, skipped={"too_large": 1}, warnings={"too_large": 1}
    )
    assert warnings_of(db, job["id"]) == [(3, "too_large", "note")]
    assert props(db, project) == {"u1": {"note": "small", "n": 1}, "u3": {"note": "after", "n": 3}}


def test_small_limits_from_the_environment(
    database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    """A line over PROFILESTORE_MAX_IMPORT_LINE_BYTES is skipped; chunks of PROFILESTORE_IMPORT_CHUNK_ROWS
    identifiers: a repeat in a later chunk is a duplicate too, and its values win."""
    rows = ["u1,1,a", "u2,2,b", "u3,3," + "y" * 500, "u4,4,d", "u1,5,", "u5,6,e", "u6,7,f", "u2,,g", "u7,9,h"]
    path = write(tmp_path, "f.csv", "distinct_id,n,s\n" + "\n".join(rows) + "\n")
    env = {"PROFILESTORE_MAX_IMPORT_LINE_BYTES": "200", "PROFILESTORE_IMPORT_CHUNK_ROWS": "3"}
    ran = cli(database_url, str(path), "--token", project["token"], env=env)
    assert ran.rc == 3, ran.err
    job = last_job(db, project)
    assert counts(job["summary"]) == outcome(
        rows=9,
        created=6,
        updated=2,
        skipped={"too_large": 1},
        warnings={"too_large": 1, "duplicate": 2},
    )
    assert warnings_of(db, job["id"]) == [
        (4, "too_large", None),
        (6, "duplicate", None),
        (9, "duplicate", None),
    ]
    assert props(db, project) == {
        "u1": {"n": 5, "s": "a"},
        "u2": {"n": 2, "s": "g"},
        "u4": {"n": 4, "s": "d"},
        "u5": {"n": 6, "s": "e"},
        "u6": {"n": 7, "s": "f"},
        "u7": {"n": 9, "s": "h"},
    }


NOT_TEXT = "the file is not text (it holds NUL bytes: a binary file, or UTF-16 text; save it as UTF-8 CSV)"


def test_files_that_cannot_be_imported_exit_1(
    database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    runs = cli_many(
        database_url,
        [
            [str(write(tmp_path, "empty.csv", b"")), "--token", project["token"]],
            [str(write(tmp_path, "photo.csv", bytes(range(256)) * 40)), "--token", project["token"]],
            [str(tmp_path / "missing.csv"), "--token", project["token"]],
        ],
    )
    assert [(r.rc, r.err) for r in runs] == [
        (1, "error: the file is empty\n"),
        (1, f"error: {NOT_TEXT}\n"),
        (1, f"error: {tmp_path / 'missing.csv'}: no such file\n"),
    ]
    assert props(db, project) == {}
    jobs = db.execute("SELECT state, error FROM import_jobs WHERE project_id = %s", (project["id"],))
    assert sorted((j["state"], j["error"]) for j in jobs.fetchall()) == [
        ("failed", "the file is empty"),
        ("failed", NOT_TEXT),
    ]


def test_an_unknown_token_or_no_database_exit_1(
    database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    path = str(write(tmp_path, "f.csv", "distinct_id\nu1\n"))
    unknown, down = cli_many(
        database_url,
        [[path, "--token", "no-such-token"], [path, "--token", project["token"]]],
        urls=[database_url, "postgresql://postgres@127.0.0.1:1/nothing"],
    )
    assert (unknown.rc, unknown.err) == (1, "error: no project has this token\n")
    assert down.rc == 1 and down.err.startswith("error: cannot reach the database: "), down.err
    assert job_count(db, project) == 0


def test_a_header_only_file_exits_0(database_url: str, project: Project, db: DB, tmp_path: Path) -> None:
    ran = cli(database_url, str(write(tmp_path, "h.csv", "distinct_id,plan\n")), "--token", project["token"])
    assert ran.rc == 0, ran.err
    assert counts(last_job(db, project)["summary"]) == outcome(rows=0)
    assert props(db, project) == {}


def test_bad_options_exit_2(database_url: str, project: Project, db: DB, tmp_path: Path) -> None:
    path = str(write(tmp_path, "f.csv", "distinct_id,a\nu1,1\n"))
    runs = cli_many(
        database_url,
        [
            [path, "--token", project["token"], "--mode", "merge"],
            [path, "--token", project["token"], "--map", "a=b:float"],
        ],
    )
    assert [(r.rc, r.err) for r in runs] == [
        (2, "error: mode: Input should be 'create', 'update' or 'upsert'\n"),
        (
            2,
            "error: map: Value error, --map 'a=b:float': unknown type 'float' (one of string, number,"
            " boolean, datetime, list, object)\n",
        ),
    ]
    assert job_count(db, project) == 0


def test_a_dry_run_of_group_profiles(database_url: str, project: Project, db: DB, tmp_path: Path) -> None:
    path = write(tmp_path, "g.csv", "company,plan,seats\nacme,pro,3\nglobex,free,\nacme,,4\n")
    args = [str(path), "--token", project["token"], "--group-key", "company", "--mode", "create"]
    dry = cli(database_url, *args, "--dry-run")
    assert dry.rc == 0, dry.err
    assert "read (a dry run: nothing written) 3 rows" in dry.err
    summary: dict[str, Any] = last_job(db, project)["summary"]
    assert (summary["dry_run"], summary["profile_type"]) == (True, "group")
    assert counts(summary) == outcome(rows=3, created=2, updated=1, warnings={"duplicate": 1})
    assert group_props(db, project) == {}
    assert props(db, project) == {}


def test_the_warnings_file_holds_every_warning(
    database_url: str, project: Project, db: DB, tmp_path: Path
) -> None:
    """The command shows the first 20 warnings; --warnings FILE has them all."""
    body = io.StringIO()
    body.write("distinct_id,n\n")
    for i in range(50):
        body.write(f"u{i},{i}\n" if i % 2 else f"u{i}\n")  # every other row ragged
    path = write(tmp_path, "w.csv", body.getvalue())
    ran = cli(database_url, str(path), "--token", project["token"], "--warnings", str(tmp_path / "all.csv"))
    assert ran.rc == 3, ran.err
    written = warnings_file(tmp_path / "all.csv")
    assert written[1:] == [
        [str(line), "ragged", "", f"line {line}: 1 cells where the header has 2; skipped"]
        for line in range(2, 52, 2)
    ]
    shown = [line for line in ran.err.splitlines() if line.startswith("  line ")]
    assert shown == [f"  {row[3]}" for row in written[1:21]]
    assert "  ... 5 more: --warnings FILE writes them all as CSV\n" in ran.err
