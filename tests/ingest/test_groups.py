"""/groups: group profiles follow the same rules as user profiles, under (group_key, group_id)."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest
from mixpanel import BufferedConsumer, Consumer, Mixpanel

from support import LiveServer, engage_vectors

VECTORS = engage_vectors()
Row = dict[str, Any]


def groups_of(db: psycopg.Connection[Row], project_id: int) -> dict[tuple[str, str], Row]:
    rows = db.execute(
        "SELECT group_key, group_id, properties, extract(epoch FROM last_seen)::float8 AS last_seen"
        " FROM group_profiles WHERE project_id = %s",
        (project_id,),
    ).fetchall()
    return {
        (r["group_key"], r["group_id"]): {"properties": r["properties"], "last_seen": r["last_seen"]}
        for r in rows
    }


def as_group_update(update: Row, token: str) -> Row:
    record = {k: v for k, v in update.items() if k != "$distinct_id"}
    return {**record, "$token": token, "$group_key": "company", "$group_id": update["$distinct_id"]}


@pytest.mark.parametrize("vector", VECTORS, ids=[v["title"] for v in VECTORS])
def test_vectors_as_group_updates(
    vector: Row, client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    records = [as_group_update(u, project["token"]) for u in vector["updates"]]
    response = client.post("/groups", params={"verbose": "2"}, json=records)
    assert response.json() == {"code": 200, "status": "OK", "num_records_imported": len(records)}
    found = groups_of(db, project["id"])
    key = ("company", vector["updates"][0]["$distinct_id"])
    if vector["expected"] is None:
        assert key not in found
    else:
        assert found[key] == vector["expected"]
    assert db.execute(
        "SELECT count(*) AS n FROM profiles WHERE project_id = %s", (project["id"],)
    ).fetchone() == {"n": 0}


def test_python_sdk_group_calls(server: LiveServer, project: Row, db: psycopg.Connection[Row]) -> None:
    mp = Mixpanel(project["token"], consumer=Consumer(groups_url=f"{server.url}/groups"))
    mp.group_set("company", "acme", {"plan": "pro", "seats": 3})
    mp.group_set_once("company", "acme", {"plan": "free", "founded": 2001})
    mp.group_union("company", "acme", {"tags": ["b2b", "eu"]})
    mp.group_remove("company", "acme", {"tags": "eu"})
    mp.group_unset("company", "acme", ["seats"])
    mp.group_set("company", 42, {"name": "numeric id"})
    mp.group_set("company", "gone", {"x": 1})
    mp.group_delete("company", "gone")
    found = groups_of(db, project["id"])
    assert found[("company", "acme")]["properties"] == {"plan": "pro", "founded": 2001, "tags": ["b2b"]}
    assert found[("company", "42")]["properties"] == {"name": "numeric id"}
    assert ("company", "gone") not in found


def test_bad_group_records(client: httpx.Client, project: Row, db: psycopg.Connection[Row]) -> None:
    token = project["token"]
    records = [
        {"$token": token, "$group_id": "a", "$set": {"x": 1}},
        {"$token": token, "$group_key": "company", "$set": {"x": 1}},
        {"$token": token, "$group_key": "", "$group_id": "a", "$set": {"x": 1}},
        {"$token": token, "$group_key": "company", "$group_id": "ok", "$set": {"x": 1}},
        {"$token": token, "$group_key": "company", "$group_id": "ok", "$add": {"x": "one"}},
    ]
    response = client.post("/groups", params={"verbose": "2"}, json=records)
    assert response.status_code == 400
    failed = response.json()["failed_records"]
    assert [(f["index"], f["$group_id"], f["field"]) for f in failed] == [
        (0, "a", "$group_key"),
        (1, None, "$group_id"),
        (2, "a", "$group_key"),
        (4, "ok", "$add.x"),
    ]
    assert groups_of(db, project["id"])[("company", "ok")]["properties"] == {"x": 1}


def test_group_conflicts_are_warnings(client: httpx.Client, project: Row) -> None:
    token = project["token"]
    base = {"$token": token, "$group_key": "company", "$group_id": "acme"}
    client.post("/groups", json=[{**base, "$set": {"name": "Acme"}}, {**base, "$add": {"name": 1}}])
    response = client.get("/api/ingestion-warnings", auth=(project["api_secret"], ""))
    [warning] = response.json()["results"]
    assert (warning["kind"], warning["distinct_id"], warning["property"]) == ("group", "company/acme", "name")


def test_python_sdk_buffered_group_calls(
    server: LiveServer, project: Row, db: psycopg.Connection[Row]
) -> None:
    consumer = BufferedConsumer(max_size=3, groups_url=f"{server.url}/groups")
    mp = Mixpanel(project["token"], consumer=consumer)
    for i in range(7):
        mp.group_set("team", f"t{i}", {"size": i})
    mp.group_union("team", "t1", {"tools": ["git"]})
    consumer.flush()
    found = groups_of(db, project["id"])
    assert {k: v["properties"] for k, v in found.items()} == {
        **{("team", f"t{i}"): {"size": i} for i in range(7)},
        ("team", "t1"): {"size": 1, "tools": ["git"]},
    }
