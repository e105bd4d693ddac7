"""Profile export: GET /api/profiles/export (CSV, JSONL, gzip) and `profilestore export`; constant memory."""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from support import free_port

CLI = [sys.executable, "-m", "profilestore"]

TRICKY = [
    "plain",
    "a,b",
    'say "hi"',
    "line one\nline two",
    "crlf\r\nend",
    ' ,"\n',
    "",
    "ünïcødé ✓",
]


def basic(secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{secret}:".encode()).decode()}


def load(client: httpx.Client, token: str, updates: list[dict[str, Any]]) -> None:
    batch = [{"$token": token, **u} for u in updates]
    assert client.post("/engage", params={"verbose": 1}, content=orjson.dumps(batch)).json()["status"] == 1


@pytest.fixture
def tricky(client: httpx.Client, project: dict[str, Any]) -> dict[str, Any]:
    updates = [{"$distinct_id": f"t{i}", "$set": {"text": s, "i": i}} for i, s in enumerate(TRICKY)]
    updates.append(
        {
            "$distinct_id": 'id,with "quotes"',
            "$set": {"list": ["a", "b,c"], "obj": {"k": [1, 2]}, "flag": True, "none": None, "f": 1.5},
        }
    )
    load(client, project["token"], updates)
    return project


def export(client: httpx.Client, secret: str, **params: Any) -> httpx.Response:
    response = client.get("/api/profiles/export", params=params, headers=basic(secret))
    assert response.status_code == 200, response.text
    return response


def test_csv_round_trip(client: httpx.Client, tricky: dict[str, Any]) -> None:
    response = export(client, tricky["api_secret"], format="csv", columns="text,i")
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text, newline="")))
    assert rows[0] == ["$distinct_id", "text", "i"]
    by_id = {r[0]: r[1:] for r in rows[1:]}
    assert len(by_id) == len(TRICKY) + 1
    for i, s in enumerate(TRICKY):
        assert by_id[f"t{i}"] == [s, str(i)]
    assert by_id['id,with "quotes"'] == ["", ""]  # missing properties are empty cells


def test_csv_all_columns_and_types(client: httpx.Client, tricky: dict[str, Any]) -> None:
    text = export(client, tricky["api_secret"], where='defined(properties["obj"])').text
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows) == 1
    [row] = rows
    assert next(iter(row)) == "$distinct_id" and row["$distinct_id"] == 'id,with "quotes"'
    assert json.loads(row["list"]) == ["a", "b,c"]
    assert json.loads(row["obj"]) == {"k": [1, 2]}
    assert (row["flag"], row["none"], row["f"]) == ("true", "", "1.5")
    assert len(row["$last_seen"]) == 19


def test_jsonl(client: httpx.Client, tricky: dict[str, Any]) -> None:
    response = export(client, tricky["api_secret"], format="jsonl", where='properties["i"] < 3')
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["$distinct_id"] for line in lines] == ["t0", "t1", "t2"]
    assert lines[1]["$properties"]["text"] == "a,b" and "$last_seen" in lines[1]["$properties"]
    chosen = export(
        client, tricky["api_secret"], format="jsonl", columns="text", where='properties["i"] == 3'
    )
    assert [json.loads(x) for x in chosen.text.splitlines()] == [
        {"$distinct_id": "t3", "$properties": {"text": TRICKY[3]}}
    ]


def test_gzip(client: httpx.Client, tricky: dict[str, Any]) -> None:
    plain = export(client, tricky["api_secret"], format="jsonl").content
    as_file = export(client, tricky["api_secret"], format="jsonl", gzip="true")
    assert as_file.headers["content-type"] == "application/gzip"
    assert gzip.decompress(as_file.content) == plain
    encoded = client.get(
        "/api/profiles/export",
        params={"format": "jsonl"},
        headers={**basic(tricky["api_secret"]), "Accept-Encoding": "gzip"},
    )
    assert encoded.headers["content-encoding"] == "gzip" and encoded.content == plain  # httpx decodes it


def test_errors(client: httpx.Client, tricky: dict[str, Any]) -> None:
    assert client.get("/api/profiles/export").status_code == 401
    auth = basic(tricky["api_secret"])
    for params in ({"where": "properties["}, {"format": "xml"}, {"columns": "[1]"}):
        response = client.get("/api/profiles/export", params=params, headers=auth)
        assert response.status_code == 400, response.text
        assert response.json()["error"] in ("BadRequest", "ValidationError")
    # found by the export itself, before its first byte: an answer of its own, not a cut-off 200
    unknown = client.get("/api/profiles/export", params={"filter_by_cohort": '{"id": 987654}'}, headers=auth)
    assert unknown.status_code == 404, unknown.text
    groups = client.get(
        "/api/profiles/export",
        params={"filter_by_cohort": '{"id": 987654}', "data_group_id": "company"},
        headers=auth,
    )
    assert groups.status_code == 400 and "data_group_id" in groups.json()["detail"], groups.text


def test_cli_export(tricky: dict[str, Any], database_url: str, tmp_path: Any) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    out = tmp_path / "profiles.csv"
    done = subprocess.run(
        [
            *CLI,
            "export",
            "--token",
            tricky["token"],
            "--columns",
            "text",
            "--where",
            'properties["i"] >= 1',
            "-o",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO(out.read_text(), newline="")))
    assert rows[0] == ["$distinct_id", "text"] and len(rows) == len(TRICKY)  # t1.. and the header
    assert f"exported {len(TRICKY) - 1} profiles" in done.stderr
    jsonl = subprocess.run(
        [*CLI, "export", "--token", tricky["token"], "--format", "jsonl"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert len(jsonl.stdout.splitlines()) == len(TRICKY) + 1
    bad = subprocess.run(
        [*CLI, "export", "--token", "nope"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert bad.returncode == 1 and "token" in bad.stdout + bad.stderr


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_200k_profiles_in_constant_memory(database_url: str, db: psycopg.Connection[dict[str, Any]]) -> None:
    """200,000 profiles as CSV and JSONL while the server's peak memory stays under 200 MB."""
    from support import new_project

    project = new_project(database_url)
    db.execute(
        "INSERT INTO profiles (project_id, distinct_id, properties, last_seen)"
        " SELECT %s, 'user-' || i, jsonb_build_object('$email', 'user' || i || '@example.com',"
        " 'plan', (ARRAY['free','pro','team'])[1 + i %% 3], 'n', i, 'bio', repeat('x', 200),"
        " 'tags', jsonb_build_array('a', 'b', i::text)), now() FROM generate_series(1, 200000) i",
        (project["id"],),
    )
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url}
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        peaks: list[float] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peaks.append(peak_rss_mib(proc.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            for fmt in ("csv", "jsonl"):
                lines = 0
                with httpx.stream(
                    "GET",
                    base + "/api/profiles/export",
                    params={"format": fmt},
                    headers=basic(project["api_secret"]),
                    timeout=120,
                ) as response:
                    assert response.status_code == 200
                    for chunk in response.iter_bytes():
                        lines += chunk.count(b"\n")
                assert lines == 200_000 + (1 if fmt == "csv" else 0)
        finally:
            stop.set()
            sampler.join()
        assert max(peaks) < 200, f"server peak RSS {max(peaks):.0f} MiB"
    finally:
        proc.terminate()
        proc.wait(30)


def test_export_reads_from_the_read_replica(
    database_url: str, db: psycopg.Connection[dict[str, Any]]
) -> None:
    """READ_DATABASE_URL: the export streams from the replica (here a second database holding other rows),
    and checks the API secret there too (as a replica holds the primary's projects: copied here);
    tests/query/test_replica.py does it on a real hot standby."""
    import uuid

    from profilestore.db import migrate
    from profilestore.db.engine import connect
    from support import LiveServer, make_settings, new_project, replace_dbname

    project = new_project(database_url)
    name = f"profilestore_replica_{uuid.uuid4().hex[:8]}"
    db.execute(f'CREATE DATABASE "{name}"')
    replica = replace_dbname(database_url, name)
    try:
        migrate.upgrade(replica)
        row = db.execute("SELECT * FROM projects WHERE id = %s", (project["id"],)).fetchone()
        assert row is not None
        with connect(replica) as conn:
            columns = ", ".join(row)
            values = ", ".join(f"%({c})s" for c in row)
            conn.execute(f"INSERT INTO projects ({columns}) VALUES ({values})", row)
            conn.execute(
                "INSERT INTO profiles (project_id, distinct_id, properties) VALUES (%s, 'on-replica', '{}')",
                (project["id"],),
            )
        with (
            LiveServer(database_url, make_settings(read_database_url=replica)) as live,
            httpx.Client(base_url=live.url) as client,
        ):
            text = export(client, project["api_secret"], format="jsonl").text
        assert [json.loads(line)["$distinct_id"] for line in text.splitlines()] == ["on-replica"]
    finally:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
