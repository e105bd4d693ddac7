"""`Idempotency-Key` on /engage, /groups, /track and /import (ingest/idempotency.py), over real HTTP: a retry
of the same request is answered the first answer and applies nothing; another request under the same key is
a 422; a key in use by a running request is a 409; a bad key is a 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from fastapi import Response
from psycopg.rows import dict_row

from profilestore.db.engine import libpq_dsn
from profilestore.ingest import idempotency, pipeline
from profilestore.ingest.profiles.service import ProfileUpdates
from profilestore.projects import TokenCache
from profilestore.settings import Settings
from support import new_project, profiles_of

Row = dict[str, Any]


def add_one(project: Row, user: str = "u1") -> list[Row]:
    return [{"$token": project["token"], "$distinct_id": user, "$add": {"n": 1}, "$append": {"seen": "x"}}]


def post(client: httpx.Client, path: str, body: Any, key: str | None, **kwargs: Any) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(path, json=body, headers=headers, **kwargs)


def properties(db: psycopg.Connection[Row], project: Row, user: str = "u1") -> Row:
    return profiles_of(db, project["id"])[user]["properties"]


def test_a_retry_is_answered_the_first_answer_and_applies_nothing(
    client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    first = post(client, "/engage", add_one(project), "k-1", params={"verbose": "1"})
    again = post(client, "/engage", add_one(project), "k-1", params={"verbose": "1"})
    assert (first.status_code, first.json()) == (200, {"status": 1, "error": None})
    assert "idempotent-replayed" not in first.headers
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"] == first.headers["content-type"]
    assert properties(db, project) == {"n": 1, "seen": ["x"]}
    # Another key is another request (without keys, a retry applies twice, as with Mixpanel).
    post(client, "/engage/", add_one(project), "k-2")
    post(client, "/engage", add_one(project), None)
    assert properties(db, project) == {"n": 3, "seen": ["x", "x", "x"]}
    row = db.execute("SELECT project_ids FROM idempotency_keys WHERE key = 'k-1'").fetchone()
    assert row == {"project_ids": [project["id"]]}


def test_the_same_key_for_another_request_is_a_422(
    client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    assert post(client, "/engage", add_one(project), "k").status_code == 200
    other_body = post(client, "/engage", add_one(project, "u2"), "k", params={"verbose": "1"})
    other_params = post(client, "/engage", add_one(project), "k", params={"verbose": "2"})
    for response in (other_body, other_params):
        assert response.status_code == 422
        assert response.json()["error"].startswith("this Idempotency-Key was used for a different request")
    assert set(profiles_of(db, project["id"])) == {"u1"}
    assert properties(db, project) == {"n": 1, "seen": ["x"]}
    # The same records gzipped, or as the form SDKs send them, are the same request only if the bytes agree
    # once decompressed: gzip of the same JSON replays.
    body = orjson.dumps(add_one(project))
    plain = client.post(
        "/engage", content=body, headers={"Idempotency-Key": "z", "Content-Type": "application/json"}
    )
    zipped = client.post(
        "/engage",
        content=gzip.compress(body),
        headers={"Idempotency-Key": "z", "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert plain.status_code == zipped.status_code == 200
    assert zipped.headers["idempotent-replayed"] == "true"
    assert properties(db, project)["n"] == 2


def test_two_projects_may_use_the_same_key(
    client: httpx.Client, project: Row, database_url: str, db: psycopg.Connection[Row]
) -> None:
    """A key belongs to the project tokens of its records (or the credentials' project): no collision."""
    other = new_project(database_url)
    assert post(client, "/engage", add_one(project), "1").status_code == 200
    second = post(client, "/engage", add_one(other), "1")
    assert second.status_code == 200 and "idempotent-replayed" not in second.headers
    assert properties(db, other) == {"n": 1, "seen": ["x"]}
    imported = [
        {"event": "I", "properties": {"distinct_id": "u", "time": int(time.time()), "$insert_id": "a"}}
    ]
    for owner in (project, other):
        answer = post(client, "/import", imported, "1", auth=(owner["api_secret"], ""))
        assert answer.status_code == 200 and "idempotent-replayed" not in answer.headers


def test_a_key_in_use_is_a_409(client: httpx.Client, project: Row, database_url: str, db: Any) -> None:
    """The running request's transaction holds the key's advisory lock: here a session holds it instead."""
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as holder:
        name = idempotency.lock_name(
            "/engage", idempotency.scope_of(add_one(project), "$token", None), "busy"
        )
        holder.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (name,))
        busy = post(client, "/engage", add_one(project), "busy")
        assert busy.status_code == 409
        assert busy.json()["error"].startswith("a request with this Idempotency-Key is still being processed")
        assert profiles_of(db, project["id"]) == {}
        # Released here, at once (closing the session would release it only when its backend has exited).
        holder.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (name,))
    done = post(client, "/engage", add_one(project), "busy")
    assert done.status_code == 200 and "idempotent-replayed" not in done.headers
    assert properties(db, project)["n"] == 1


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ([("Idempotency-Key", "")], "must be 1 to 255 printable ASCII characters"),
        ([("Idempotency-Key", "x" * 256)], "must be 1 to 255 printable ASCII characters"),
        ([(b"Idempotency-Key", "caf\u00e9".encode())], "must be 1 to 255 printable ASCII"),
        ([("Idempotency-Key", "tab\there")], "must be 1 to 255 printable ASCII"),
        ([("Idempotency-Key", "a"), ("Idempotency-Key", "b")], "send one key, not 2"),
    ],
    ids=["empty", "too long", "not ascii", "control character", "two"],
)
def test_a_bad_key_is_a_400_and_applies_nothing(
    client: httpx.Client, project: Row, db: Any, headers: list[Any], message: str
) -> None:
    response = client.post("/engage", content=orjson.dumps(add_one(project)), headers=headers)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert profiles_of(db, project["id"]) == {}


def test_a_quoted_key_is_the_same_key(client: httpx.Client, project: Row, db: Any) -> None:
    """The draft writes the key as a Structured Fields string, in quotes."""
    assert post(client, "/engage", add_one(project), '"abc"').status_code == 200
    assert post(client, "/engage", add_one(project), "abc").headers["idempotent-replayed"] == "true"
    assert post(client, "/engage/", add_one(project), "abc").headers["idempotent-replayed"] == "true"
    assert properties(db, project)["n"] == 1


def test_every_ingestion_endpoint(client: httpx.Client, project: Row, db: psycopg.Connection[Row]) -> None:
    now = int(time.time())
    group = [{"$token": project["token"], "$group_key": "company", "$group_id": "c1", "$add": {"n": 1}}]
    event = {"event": "E", "properties": {"token": project["token"], "distinct_id": "u1", "time": now}}
    imported = [{"event": "I", "properties": {"distinct_id": "u1", "time": now, "$insert_id": "i-1"}}]
    auth = (project["api_secret"], "")
    for _ in range(2):
        assert post(client, "/groups", group, "g").status_code == 200
        assert post(client, "/track", [event], "t").status_code == 200  # no $insert_id: not deduplicated
        assert post(client, "/import", imported, "i", auth=auth).status_code == 200
    rows = db.execute(
        "SELECT properties FROM group_profiles WHERE project_id = %s", (project["id"],)
    ).fetchall()
    assert [r["properties"] for r in rows] == [{"n": 1}]
    events = db.execute(
        "SELECT event FROM events WHERE project_id = %s ORDER BY 1", (project["id"],)
    ).fetchall()
    assert [e["event"] for e in events] == ["E", "I"]
    # The key names a request to one endpoint: the same key elsewhere is another request.
    assert post(client, "/engage", add_one(project), "g").status_code == 200
    assert "idempotent-replayed" not in post(client, "/track", [event], "g").headers


def test_an_unreadable_body_is_not_kept(client: httpx.Client, project: Row, db: Any) -> None:
    """Nothing was applied: the retry runs again (and, fixed, applies)."""
    bad = client.post(
        "/engage", content=b"{not json", headers={"Idempotency-Key": "u"}, params={"verbose": "1"}
    )
    assert bad.status_code == 200 and bad.json()["status"] == 0
    assert db.execute("SELECT count(*) AS n FROM idempotency_keys WHERE key = 'u'").fetchone() == {"n": 0}


def test_expired_keys_are_swept_and_run_again(
    client: httpx.Client, project: Row, db: psycopg.Connection[Row], database_url: str
) -> None:
    assert post(client, "/engage", add_one(project), "old").status_code == 200
    db.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old'")
    again = post(client, "/engage", add_one(project), "old")  # past idempotency_hours (24): a new request
    assert "idempotent-replayed" not in again.headers
    assert properties(db, project)["n"] == 2
    db.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old'")

    async def sweep() -> None:
        async with await psycopg.AsyncConnection.connect(libpq_dsn(database_url), autocommit=True) as conn:
            await idempotency.sweep(conn, 24)

    asyncio.run(sweep())
    assert db.execute("SELECT count(*) AS n FROM idempotency_keys WHERE key = 'old'").fetchone() == {"n": 0}


class RefusedOnce(ProfileUpdates):
    """Profile updates whose whole-batch statement Postgres refuses (a real DataError), as for a value it
    cannot store: the batch is then applied record by record, inside the key's transaction."""

    async def apply(self, conn: psycopg.AsyncConnection[Any], batch: Any, now: float) -> None:
        await conn.execute("SELECT to_timestamp(-1e17)")


def test_a_refused_batch_inside_the_keys_transaction(project: Row, database_url: str, db: Any) -> None:
    async def run() -> None:
        conn = await psycopg.AsyncConnection.connect(
            libpq_dsn(database_url), autocommit=True, row_factory=dict_row
        )
        key = idempotency.claimed(
            lambda: _same(conn), endpoint="/engage", scope="s", key="refused-batch", fingerprint=b"", hours=24
        )
        async with conn, key as claim:
            assert claim.replay is None
            outcome = await pipeline.ingest(
                RefusedOnce(Settings()),
                add_one(project),
                body_bytes=100,
                now=time.time(),
                tokens=TokenCache(),
                connect=claim.connector(),
            )
            assert outcome.failures == []
            await claim.store(Response(content=b"{}", media_type="application/json"), outcome.project_ids)

    asyncio.run(run())
    assert properties(db, project) == {"n": 1, "seen": ["x"]}
    kept = "SELECT count(*) AS n FROM idempotency_keys WHERE key = 'refused-batch'"
    assert db.execute(kept).fetchone() == {"n": 1}


@contextlib.asynccontextmanager
async def _same(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    yield conn
