"""The CSV import API's refusals and bounds over real HTTP: bad options, credentials checked before any of
the upload is read, the preview's and the upload's byte limits, the server's job slots (429), one project's
jobs hidden from another, and jobs whose process stopped (interrupted).  An answer given before the upload
was read to its end closes the connection: the rest of the upload is not read."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from api_support import (
    ENDED,
    IMPORT,
    PREVIEW,
    basic,
    closed_by_server,
    csv_bytes,
    idle,
    process_of,
    read_response,
    request_head,
    run,
    secret_of,
    start,
    wait,
)

from profilestore.imports.sql import STALE_SECONDS
from support import LiveServer, make_settings, new_project, profiles_of

DB = psycopg.Connection[dict[str, Any]]
PREVIEW_BYTES = 300
MAX_UPLOAD = 4000
GIGABYTE = 1_000_000_000
ROWS = b"distinct_id,plan\n" + b"".join(b"u%d,plan-%d\n" % (i, i) for i in range(2000))


@pytest.fixture(scope="module")
def limited(database_url: str) -> Iterator[LiveServer]:
    """A server whose previews read 300 bytes and whose uploads are at most 4000 bytes."""
    settings = make_settings(import_preview_bytes=PREVIEW_BYTES, max_import_bytes=MAX_UPLOAD)
    with LiveServer(database_url, settings) as live:
        yield live


@pytest.fixture(scope="module")
def one_slot(database_url: str) -> Iterator[LiveServer]:
    """A server that runs one import at a time."""
    with LiveServer(database_url, make_settings(max_import_jobs=1, body_timeout_seconds=120)) as live:
        yield live


@pytest.fixture
def uploads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Where the servers of this process put uploads during the test (to see none is left behind)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def left(uploads: Path) -> list[str]:
    return sorted(p.name for p in uploads.glob("profilestore-upload-*"))


def jobs_of(db: DB, project: dict[str, Any]) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT id, state FROM import_jobs WHERE project_id = %s ORDER BY id", (project["id"],)
    ).fetchall()


def answered_unread(
    live: LiveServer, path: str, auth: str | None, sent: bytes = ROWS[:100]
) -> tuple[int, bytes]:
    """POST declaring a 1 GB upload, of which only `sent` is sent: (status, body) of an answer that comes
    at once, on a connection the server then closes."""
    with socket.create_connection(("127.0.0.1", live.port)) as sock:
        began = time.monotonic()
        sock.sendall(request_head(path, length=GIGABYTE, auth=auth) + sent)
        status, headers, body = read_response(sock, timeout=15)
        assert time.monotonic() - began < 10  # the gigabyte never comes: the answer does not wait for it
        assert headers["connection"] == "close" and closed_by_server(sock)
    return status, body


# ---- options ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        (
            {"sheet": "1"},
            "sheet: not an import option (the options: cohort, columns, delimiter, dry_run, encoding,"
            " group_key, header, id_column, map, mode, project_id, skip, types)",
        ),
        ({"mode": "merge"}, "mode: Input should be 'create', 'update' or 'upsert'"),
        ({"types": "guess"}, "types: Input should be 'infer' or 'string'"),
        ({"dry_run": "maybe"}, "dry_run: must be true or false"),
        (
            {"header": "false"},
            "options: Value error, a file without a header needs its column names (columns)",
        ),
        ({"map": "plan"}, "map: Value error, --map 'plan': expected COLUMN=PROPERTY or COLUMN=PROPERTY:TYPE"),
        (
            {"map": "plan=plan:money"},
            "map: Value error, --map 'plan=plan:money': unknown type 'money' (one of string, number, boolean,"
            " datetime, list, object)",
        ),
        (
            {"cohort": "x", "group_key": "company"},
            "options: Value error, cohort: cohorts hold users; a group profile import cannot make one",
        ),
        ({"encoding": "klingon"}, "encoding: Value error, unknown encoding 'klingon'"),
        (
            {"map": "Plan=plan"},
            "no column is named 'Plan' (the columns: 'distinct_id', 'plan')",
        ),
        ({"skip": "notes"}, "no column is named 'notes' (the columns: 'distinct_id', 'plan')"),
        ({"id_column": "user"}, "no column is named 'user' (the columns: 'distinct_id', 'plan')"),
        ({"skip": "distinct_id"}, "column 'distinct_id' is the identifier: it cannot be skipped"),
        ({"map": "plan=$distinct_id"}, "column 'plan': only the identifier column can be $distinct_id"),
        (
            {"map": ["plan=tier", "distinct_id=tier"], "id_column": "distinct_id"},
            "columns 'distinct_id' and 'plan' both set 'tier'; --map or --skip one",
        ),
    ],
)
def test_bad_options_are_400_and_queue_nothing(
    client: httpx.Client, project: dict[str, Any], db: DB, params: dict[str, str], detail: str
) -> None:
    r = start(client, project, ROWS[:200], **params)
    assert r.status_code == 400
    assert r.json() == {"error": "BadRequest", "detail": detail}
    assert jobs_of(db, project) == []


def test_an_empty_or_binary_upload_is_400(client: httpx.Client, project: dict[str, Any], db: DB) -> None:
    for body, detail in [
        (b"", "the file is empty"),
        (
            b"\x00\x01" * 500,
            "the file is not text (it holds NUL bytes: a binary file, or UTF-16 text; save it as",
        ),
        (gzip.compress(b""), "the file is empty"),
        (b"a,a\n1,2\n", "columns 'a' and 'a' both set 'a'; --map or --skip one"),
    ]:
        r = start(client, project, body)
        assert r.status_code == 400 and r.json()["detail"].startswith(detail), r.json()
    assert jobs_of(db, project) == []


# ---- credentials ------------------------------------------------------------------------------------------


def test_every_call_needs_the_secret(
    client: httpx.Client, server: LiveServer, project: dict[str, Any], db: DB, uploads: Path
) -> None:
    unauthorized = {"error": "Unauthorized", "detail": "missing or invalid API secret"}
    for auth in (None, httpx.BasicAuth("not-a-secret", "")):
        for method, path in [
            ("POST", PREVIEW),
            ("POST", IMPORT),
            ("GET", f"{IMPORT}/1"),
            ("GET", f"{IMPORT}/1/warnings.csv"),
        ]:
            kwargs: dict[str, Any] = {"content": ROWS} if method == "POST" else {}
            r = client.request(method, path, auth=auth, **kwargs)
            assert (r.status_code, r.json()) == (401, unauthorized), (method, path)
    # A stranger declaring a gigabyte is answered at once; the upload is not read (no file, no job).
    for path in (IMPORT, PREVIEW):
        for header in (None, basic("not-a-secret")):
            assert answered_unread(server, path, header)[0] == 401
    assert left(uploads) == [] and jobs_of(db, project) == []


def test_a_job_is_seen_by_its_own_project_only(
    client: httpx.Client, project: dict[str, Any], database_url: str
) -> None:
    done = run(client, project, ROWS[:300])
    other = new_project(database_url)
    for path in (f"{IMPORT}/{done['id']}", f"{IMPORT}/{done['id']}/warnings.csv"):
        r = client.get(path, auth=secret_of(other))
        assert r.status_code == 404
        assert r.json() == {"error": "NotFound", "detail": f"no import {done['id']} in this project"}
        # Naming the owner's project with another project's secret is refused too.
        r = client.get(path, params={"project_id": project["id"]}, auth=secret_of(other))
        assert r.status_code == 403
    assert client.get(f"{IMPORT}/{done['id']}", auth=secret_of(project)).status_code == 200
    r = client.get(f"{IMPORT}/{done['id'] + 1000}", auth=secret_of(project))
    assert (r.status_code, r.json()["error"]) == (404, "NotFound")


# ---- sizes ------------------------------------------------------------------------------------------------


def test_a_preview_reads_the_head_of_the_upload_only(limited: LiveServer, project: dict[str, Any]) -> None:
    """Of a long upload the preview reads `import_preview_bytes`, drops the row they cut short, and closes
    the connection rather than read the rest; a gzip upload is previewed from its decompressed head."""
    rows = [["distinct_id", "note"]] + [[f"u{i}", f"note number {i} " + "x" * 10] for i in range(100)]
    body = csv_bytes(rows)
    head = body[:PREVIEW_BYTES]
    assert not head.endswith(b"\n")  # the limit cuts a row short
    whole_lines = head.count(b"\n")
    with httpx.Client(base_url=limited.url, auth=secret_of(project), timeout=30) as client:
        r = client.post(PREVIEW, content=body)
        assert r.status_code == 200 and r.headers["connection"] == "close"
        answer = r.json()
        assert answer["rows_sampled"] == whole_lines - 1  # the header's line is no row
        assert answer["columns"][0]["samples"] == [f"u{i}" for i in range(whole_lines - 1)]
        assert answer["columns"][1]["samples"][-1] == f"note number {whole_lines - 2} " + "x" * 10
        # Decompressed, the gzip file's head is the same 300 bytes.
        assert client.post(PREVIEW, content=gzip.compress(body)).json() == answer
        # A file shorter than the limit is read whole, the last row without its line break too.
        short = body[: body.index(b"\n", 200)]
        answer = client.post(PREVIEW, content=short).json()
        assert answer["rows_sampled"] == short.count(b"\n")
        assert answer["columns"][0]["samples"][-1] == short.rsplit(b"\n", 1)[1].split(b",")[0].decode()
    status, _ = answered_unread(limited, PREVIEW, basic(project["api_secret"]), body[:1000])
    assert status == 200


def test_an_upload_over_max_import_bytes_is_413(
    limited: LiveServer, project: dict[str, Any], db: DB, uploads: Path
) -> None:
    too_large = {"error": "PayloadTooLarge", "detail": f"the upload is over the limit of {MAX_UPLOAD} bytes"}
    body = ROWS[: ROWS.index(b"\n", MAX_UPLOAD) + 1]
    assert len(body) > MAX_UPLOAD
    with httpx.Client(base_url=limited.url, auth=secret_of(project), timeout=30) as client:
        # Declared over the limit: refused before any of it is read.
        r = client.post(IMPORT, content=body)
        assert (r.status_code, r.json(), r.headers["connection"]) == (413, too_large, "close")
        # Sent chunked (no length declared): refused once the limit is passed.
        r = client.post(IMPORT, content=iter([body[:3000], body[3000:]]))
        assert (r.status_code, r.json(), r.headers["connection"]) == (413, too_large, "close")
        assert left(uploads) == [] and jobs_of(db, project) == []
        # At the limit: accepted.
        exact = body[: body.rindex(b"\n", 0, MAX_UPLOAD) + 1]
        r = client.post(IMPORT, content=exact + b"z" * (MAX_UPLOAD - len(exact) - 1) + b"\n")
        assert r.status_code == 202, r.text
        done = wait(client, project, r.json()["id"])
    assert done["state"] == "done" and done["bytes_total"] == MAX_UPLOAD
    assert done["warnings"][-1]["kind"] == "ragged"  # the line of z's
    assert len(profiles_of(db, project["id"])) == exact.count(b"\n") - 1
    assert left(uploads) == []  # the job's upload is deleted when it ends
    assert answered_unread(limited, IMPORT, basic(project["api_secret"]))[0] == 413


# ---- job slots and stopped jobs ---------------------------------------------------------------------------

SLOW = b"distinct_id,n\n" + b"".join(b"s%d,%d\n" % (i, i) for i in range(10_000))


def test_429_while_max_import_jobs_imports_run_or_upload(
    one_slot: LiveServer, project: dict[str, Any], db: DB, uploads: Path
) -> None:
    """The slot is taken from the start of an upload to the end of its job's process."""
    busy = {
        "error": "TooManyRequests",
        "detail": "1 imports are running on this server; try again when one ends",
    }
    auth = basic(project["api_secret"])
    with httpx.Client(base_url=one_slot.url, auth=secret_of(project), timeout=30) as client:
        with socket.create_connection(("127.0.0.1", one_slot.port)) as sock:
            sock.sendall(request_head(IMPORT, length=len(ROWS), auth=auth) + ROWS[:1000])
            deadline = time.monotonic() + 60
            while not left(uploads):  # the upload is under way
                assert time.monotonic() < deadline
                time.sleep(0.02)
            r = client.post(IMPORT, content=ROWS)
            assert (r.status_code, r.json()) == (429, busy)
            assert r.headers["retry-after"] == "5" and r.headers["connection"] == "close"
            sock.sendall(ROWS[1000:])
            status, _, body = read_response(sock)
            assert status == 202, body
        # Its process runs (a new Python process takes a while to start): still no slot.
        r = client.post(IMPORT, content=ROWS)
        assert (r.status_code, r.json()) == (429, busy)
        assert wait(client, project, json.loads(body)["id"])["state"] == "done"
        idle(one_slot)  # its process ended
        r = client.post(IMPORT, content=ROWS[:100])
        assert r.status_code == 202, r.text
        assert wait(client, project, r.json()["id"])["state"] == "done"
    idle(one_slot)
    assert [j["state"] for j in jobs_of(db, project)] == ["done", "done"]
    assert left(uploads) == []


def slow_job(
    one_slot: LiveServer, client: httpx.Client, project: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """A job of 10,000 rows in chunks of 200 (the job process reads its settings from the environment),
    once it has committed a chunk or more."""
    idle(one_slot)
    with monkeypatch.context() as env:
        env.setenv("PROFILESTORE_IMPORT_CHUNK_ROWS", "200")
        r = client.post(IMPORT, content=SLOW)
    assert r.status_code == 202, r.text
    return wait(client, project, r.json()["id"], until=lambda j: j["rows_done"] > 0 or j["state"] in ENDED)


def test_a_stopped_job_is_interrupted(
    one_slot: LiveServer, project: dict[str, Any], db: DB, monkeypatch: pytest.MonkeyPatch, uploads: Path
) -> None:
    """SIGTERM (the server stopping): the job stops after its chunk in flight and says so; what it committed
    stays."""
    with httpx.Client(base_url=one_slot.url, auth=secret_of(project), timeout=30) as client:
        running = slow_job(one_slot, client, project, monkeypatch)
        assert running["state"] == "running", running
        process = process_of(one_slot, running["id"])
        assert process is not None
        os.kill(process.pid, signal.SIGTERM)  # not from the server's event loop: no reaping here
        ended = wait(client, project, running["id"])
    assert ended["state"] == "interrupted"
    assert ended["error"] == "stopped before the end; running the import again is harmless"
    assert ended["finished_at"] is not None and ended["rows_total"] == 10_000
    assert 0 < ended["rows_done"] < 10_000 and ended["rows_done"] % 200 == 0
    assert len(profiles_of(db, project["id"])) == ended["rows_done"] == ended["summary"]["created"]
    assert left(uploads) == []


def test_a_killed_job_shows_interrupted_once_its_heartbeat_is_stale(
    one_slot: LiveServer, project: dict[str, Any], db: DB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL: nothing marks the job; its heartbeat stops, and once stale the job shows `interrupted`.  The
    server's slot is free again, and running the import again finishes it."""
    with httpx.Client(base_url=one_slot.url, auth=secret_of(project), timeout=30) as client:
        running = slow_job(one_slot, client, project, monkeypatch)
        job_id = running["id"]
        process = process_of(one_slot, job_id)
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while process_of(one_slot, job_id) is not None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        killed = wait(client, project, job_id, until=lambda j: True)
        assert (killed["state"], killed["error"], killed["finished_at"]) == ("running", None, None)
        committed = killed["rows_done"]
        assert 0 < committed < 10_000 and len(profiles_of(db, project["id"])) == committed
        db.execute(
            "UPDATE import_jobs SET heartbeat_at = now() - make_interval(secs => %s) WHERE id = %s",
            (STALE_SECONDS + 1, job_id),
        )
        assert wait(client, project, job_id, until=lambda j: True)["state"] == "interrupted"
        idle(one_slot)  # the killed process is reaped: its slot is free
        again = run(client, project, SLOW)
    assert {k: again["summary"][k] for k in ("rows", "created", "unchanged", "skipped")} == {
        "rows": 10_000,
        "created": 10_000 - committed,
        "unchanged": committed,
        "skipped": 0,
    }
    assert len(profiles_of(db, project["id"])) == 10_000


def test_a_job_shows_interrupted_by_its_heartbeat(
    client: httpx.Client, project: dict[str, Any], db: DB
) -> None:
    """Queued or running, with a heartbeat older than STALE_SECONDS: interrupted; an ended job stays so."""
    ages = {"queued": [5, STALE_SECONDS + 5], "running": [5, STALE_SECONDS + 5], "done": [STALE_SECONDS * 10]}
    shown = {}
    for state, seconds in ages.items():
        for age in seconds:
            row = db.execute(
                "INSERT INTO import_jobs (project_id, state, source, options, heartbeat_at)"
                " VALUES (%s, %s, 'api', '{}', now() - make_interval(secs => %s)) RETURNING id",
                (project["id"], state, age),
            ).fetchone()
            assert row is not None
            r = client.get(f"{IMPORT}/{row['id']}", auth=secret_of(project))
            shown[(state, age)] = r.json()["state"]
    assert shown == {
        ("queued", 5): "queued",
        ("queued", STALE_SECONDS + 5): "interrupted",
        ("running", 5): "running",
        ("running", STALE_SECONDS + 5): "interrupted",
        ("done", STALE_SECONDS * 10): "done",
    }


def test_a_job_that_fails_unexpectedly_says_so(client: httpx.Client, project: dict[str, Any], db: DB) -> None:
    """Its upload gone before its process started: `failed`, with an error that names what happened."""
    r = start(client, project, ROWS[:300])
    assert r.status_code == 202, r.text
    row = db.execute("SELECT upload_path FROM import_jobs WHERE id = %s", (r.json()["id"],)).fetchone()
    assert row is not None
    os.unlink(row["upload_path"])  # the process takes far longer than this to start
    ended = wait(client, project, r.json()["id"])
    assert (ended["state"], ended["error"]) == (
        "failed",
        "the import stopped on an unexpected error (FileNotFoundError); the server's log has it",
    )
    assert profiles_of(db, project["id"]) == {}
