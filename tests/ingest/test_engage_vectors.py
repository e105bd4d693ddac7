"""Every worked example of the update rules (tests/data/engage_vectors.json), sent over HTTP, gives the
expected profile."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from support import engage_vectors, profiles_of

VECTORS = engage_vectors()


def send(client: httpx.Client, token: str, updates: list[dict[str, Any]]) -> None:
    records = [{**u, "$token": token} for u in updates]
    response = client.post("/engage", params={"verbose": "2"}, json=records)
    assert response.status_code == 200, response.text
    assert response.json() == {"code": 200, "status": "OK", "num_records_imported": len(records)}


@pytest.mark.parametrize("vector", VECTORS, ids=[v["title"] for v in VECTORS])
@pytest.mark.parametrize("delivery", ["one request each", "one batch"])
def test_vector(
    vector: dict[str, Any],
    delivery: str,
    client: httpx.Client,
    project: dict[str, Any],
    db: psycopg.Connection[dict[str, Any]],
) -> None:
    if delivery == "one batch":
        send(client, project["token"], vector["updates"])
    else:
        for update in vector["updates"]:
            send(client, project["token"], [update])
    profiles = profiles_of(db, project["id"])
    distinct_id = vector["updates"][0]["$distinct_id"]
    if vector["expected"] is None:
        assert distinct_id not in profiles
    else:
        assert profiles[distinct_id] == vector["expected"]
