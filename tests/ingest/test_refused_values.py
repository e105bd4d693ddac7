"""A value Postgres refuses (a NUL character: JSONB cannot hold one) fails its own record only.

The whole batch is refused first; the service then applies it group by group in one transaction with a
savepoint each, so the good records beside the bad one are still stored.
"""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from support import profiles_of


def test_nul_character_fails_only_its_record(
    client: httpx.Client, project: dict[str, Any], db: psycopg.Connection[dict[str, Any]]
) -> None:
    token = project["token"]
    batch = [
        {"$token": token, "$distinct_id": "good-1", "$set": {"a": 1}},
        {"$token": token, "$distinct_id": "bad", "$set": {"name": "nul\u0000here"}},
        {"$token": token, "$distinct_id": "good-2", "$add": {"n": 2}},
        {"$token": token, "$distinct_id": "good-1", "$union": {"tags": ["x"]}},
    ]
    response = client.post("/engage", params={"verbose": "2"}, json=batch)
    assert response.status_code == 400
    body = response.json()
    assert body["num_records_imported"] == 3
    [failure] = body["failed_records"]
    assert failure["index"] == 1 and failure["$distinct_id"] == "bad"
    assert failure["message"].startswith("refused by the database")
    profiles = profiles_of(db, project["id"])
    assert {d: p["properties"] for d, p in profiles.items()} == {
        "good-1": {"a": 1, "tags": ["x"]},
        "good-2": {"n": 2},
    }
