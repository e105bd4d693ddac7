"""Ingestion warnings stay bounded (issue 10, finding 1: one 307 KB request wrote 19,403 rows): a request
records at most `max_warnings_per_request` (100) per project, and one summary row counts the rest; warnings
older than `warning_retention_days` (30) are deleted by a sweep of the app, in batches."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import psycopg
import pytest

import profilestore.app
from support import LiveServer, make_settings, new_project

Row = dict[str, Any]
DB = psycopg.Connection[Row]
SUMMARY = "{} more warnings of this request were not recorded (at most 100 are kept per request)"


def warnings_of(client: httpx.Client, project: Row) -> list[Row]:
    found: list[Row] = []
    after = 0
    while True:
        response = client.get(
            "/api/ingestion-warnings",
            params={"after_id": after, "limit": 1000},
            auth=(project["api_secret"], ""),
        )
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["results"]
        if not page["results"]:
            return found
        after = page["next_after_id"]


def test_a_request_records_100_warnings_per_project_and_counts_the_rest(
    client: httpx.Client, project: Row, database_url: str
) -> None:
    other = new_project(database_url)
    names = [f"p{i:03}" for i in range(150)]
    batch = [
        {"$token": project["token"], "$distinct_id": "u1", "$set": dict.fromkeys(names, "text")},
        # 150 conflicts in the fold, and one found by validation ($last_seen): 151 in all
        {"$token": project["token"], "$distinct_id": "u1", "$add": dict.fromkeys(names, 1)},
        {"$token": project["token"], "$distinct_id": "u2", "$set": {"$last_seen": "2020-01-01"}},
        # another project in the same request has a count of its own
        {"$token": other["token"], "$distinct_id": "u1", "$set": {"s": "x"}},
        {"$token": other["token"], "$distinct_id": "u1", "$union": {"s": [1]}, "$add": {"s": 1}},
    ]
    response = client.post("/engage", params={"verbose": "2"}, json=batch)
    assert response.status_code == 200, response.text

    found = warnings_of(client, project)
    assert len(found) == 101
    assert [w["operation"] for w in found[:100]] == ["$add"] * 100
    assert [w["property"] for w in found[:100]] == names[:100]
    summary = found[100]
    assert (summary["distinct_id"], summary["operation"], summary["property"]) == ("", "", "")
    assert summary["reason"] == SUMMARY.format(51)
    assert [(w["operation"], w["property"]) for w in warnings_of(client, other)] == [
        ("$add", "s"),
        ("$union", "s"),
    ]

    # The limit is a request's: the next one records its own.
    again = [{"$token": project["token"], "$distinct_id": "u1", "$add": dict.fromkeys(names[:5], 1)}]
    assert client.post("/engage", json=again).status_code == 200
    assert len(warnings_of(client, project)) == 106


def test_the_count_follows_savepoints(db: DB, database_url: str) -> None:
    """The one-by-one path (ingest/profiles/sql.py) applies a refused batch group by group in one
    transaction, a savepoint each: a group rolled back takes its warnings out of the count too."""
    project = new_project(database_url)

    def conflicts(distinct_id: str, n: int) -> str:
        names = [f"{distinct_id}-{i}" for i in range(n)]
        updates = [
            {"t": 1.0, "set": dict.fromkeys(names, "text")},
            {"t": 2.0, "add": dict.fromkeys(names, 1)},
        ]
        key = f"{project['id']}:{distinct_id}"
        return json.dumps({key: {"p": project["id"], "d": distinct_id, "u": updates}})

    apply = (
        "SELECT profilestore_apply_profiles('[]', %s, false, '[]', 2e9, 86400, 2000, 1000000, 100, 1000000)"
    )
    with psycopg.connect(db.info.dsn) as conn, conn.transaction():
        with conn.transaction():
            conn.execute(apply, (conflicts("a", 80),))
        with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
            conn.execute(apply, (conflicts("b", 50),))
            conn.execute("SELECT 1 / 0")
        with conn.transaction():
            conn.execute(apply, (conflicts("c", 40),))
    rows = db.execute(
        "SELECT entity, reason FROM ingestion_warnings WHERE project_id = %s ORDER BY id", (project["id"],)
    ).fetchall()
    assert [r["entity"] for r in rows[:100]] == ["a"] * 80 + ["c"] * 20
    assert rows[100:] == [{"entity": "", "reason": SUMMARY.format(20)}]


def test_old_warnings_are_swept_in_batches(
    database_url: str, db: DB, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = new_project(database_url)
    insert = (
        "INSERT INTO ingestion_warnings (project_id, kind, entity, operation, property, reason, created_at)"
        " SELECT %s, 'profile', 'u' || i, '$add', 'n', 'old', now() - %s * interval '1 day'"
        " FROM generate_series(1, %s) AS i"
    )
    db.execute(insert, (project["id"], 31, 25_000))  # past the retention: three batches of the sweep
    db.execute(insert, (project["id"], 29, 3))  # within it
    db.execute(insert, (project["id"], 0, 2))

    def ages() -> list[int]:
        rows = db.execute(
            "SELECT extract(day FROM now() - created_at)::int AS age, count(*) AS n FROM ingestion_warnings"
            " WHERE project_id = %s GROUP BY 1 ORDER BY 1",
            (project["id"],),
        ).fetchall()
        return [r["n"] if r["age"] < 30 else -r["n"] for r in rows]

    assert ages() == [2, 3, -25_000]
    monkeypatch.setattr(profilestore.app, "WARNING_SWEEP_SECONDS", 0.2)
    with LiveServer(database_url, make_settings(warning_retention_days=30)):
        deadline = time.monotonic() + 30
        while ages() != [2, 3] and time.monotonic() < deadline:
            time.sleep(0.2)
    assert ages() == [2, 3]
