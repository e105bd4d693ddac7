"""The cohorts JSON API over HTTP, Mixpanel's cohorts/list, validation errors with paths, cycles, isolation
between projects, and filter_by_cohort on /api/2.0/engage and profile export."""

from __future__ import annotations

import base64
import csv
import io
import json
from typing import Any

import httpx
import psycopg
import pytest
from cohort_support import load_world

from support import new_project

Row = dict[str, Any]
PRO = {"op": "and", "filters": [{"type": "property", "where": 'properties["plan"] == "pro"'}]}
BOUGHT = {"op": "and", "filters": [{"type": "event", "event": "Purchase"}]}


def auth(project: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{project['api_secret']}:".encode()).decode()}


@pytest.fixture
def small(db: psycopg.Connection[Row], project: dict[str, Any]) -> dict[str, Any]:
    """p1 (pro, bought), p2 (free), p3 (pro), e1 and e2 bought but have no profile."""
    import datetime as dt

    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    load_world(
        db,
        project["id"],
        {"p1": {"plan": "pro"}, "p2": {"plan": "free"}, "p3": {"plan": "pro"}},
        [("Purchase", d, when, {"amount": 5}) for d in ("p1", "e1", "e2", "e2")],
    )
    return project


def create(client: httpx.Client, project: dict[str, Any], body: dict[str, Any]) -> httpx.Response:
    return client.post("/api/cohorts", json=body, headers=auth(project))


def test_crud_members_count(client: httpx.Client, small: dict[str, Any]) -> None:
    h = auth(small)
    made = create(client, small, {"name": "buyers", "description": "bought", "definition": BOUGHT})
    assert made.status_code == 201, made.text
    cohort = made.json()
    assert cohort["is_static"] is False and cohort["definition"]["filters"][0]["count"] == {
        "op": ">=",
        "value": 1,
    }
    cid = cohort["id"]
    assert client.get(f"/api/cohorts/{cid}", headers=h).json()["name"] == "buyers"
    assert [c["id"] for c in client.get("/api/cohorts", headers=h).json()] == [cid]
    assert client.get(f"/api/cohorts/{cid}/count", headers=h).json() == {"id": cid, "count": 3}
    only_profiles = client.get(f"/api/cohorts/{cid}/count", params={"include_all_users": "false"}, headers=h)
    assert only_profiles.json()["count"] == 1

    page = client.get(f"/api/cohorts/{cid}/members", params={"limit": 2}, headers=h).json()
    assert [m["distinct_id"] for m in page["members"]] == ["e1", "e2"] and page["next_after"] == "e2"
    assert page["members"][0]["properties"] is None
    rest = client.get(f"/api/cohorts/{cid}/members", params={"limit": 2, "after": "e2"}, headers=h).json()
    assert rest == {"members": [{"distinct_id": "p1", "properties": {"plan": "pro"}}], "next_after": None}

    changed = client.patch(f"/api/cohorts/{cid}", json={"name": "pros", "definition": PRO}, headers=h)
    assert changed.status_code == 200 and changed.json()["name"] == "pros"
    assert client.get(f"/api/cohorts/{cid}/count", headers=h).json()["count"] == 2
    assert client.delete(f"/api/cohorts/{cid}", headers=h).status_code == 204
    gone = client.get(f"/api/cohorts/{cid}", headers=h)
    assert gone.status_code == 404 and gone.json()["error"] == "NotFound"


def test_static_cohort(client: httpx.Client, small: dict[str, Any]) -> None:
    h = auth(small)
    cid = create(client, small, {"name": "list", "distinct_ids": ["p2", "e1", "ghost"]}).json()["id"]
    members = client.get(f"/api/cohorts/{cid}/members", headers=h).json()["members"]
    assert [m["distinct_id"] for m in members] == ["e1", "p2"]
    client.put(f"/api/cohorts/{cid}", json={"distinct_ids": ["p3"]}, headers=h)
    assert client.get(f"/api/cohorts/{cid}/count", headers=h).json()["count"] == 1
    refused = client.patch(f"/api/cohorts/{cid}", json={"definition": PRO}, headers=h)
    assert refused.status_code == 400
    both = create(client, small, {"name": "x", "distinct_ids": ["a"], "definition": PRO})
    assert both.status_code == 400 and both.json()["error"] == "BadRequest"


def test_mixpanel_list_shape(client: httpx.Client, small: dict[str, Any]) -> None:
    cid = create(client, small, {"name": "buyers", "description": "d", "definition": BOUGHT}).json()["id"]
    for path in ("/api/2.0/cohorts/list", "/api/query/cohorts/list"):
        for method in ("GET", "POST"):
            answer = client.request(method, path, headers=auth(small))
            assert answer.status_code == 200
            [entry] = answer.json()
            assert set(entry) == {"id", "name", "description", "count", "is_visible", "created", "project_id"}
            assert (entry["id"], entry["count"], entry["is_visible"], entry["project_id"]) == (
                cid,
                3,
                1,
                small["id"],
            )
            assert len(entry["created"]) == 19 and entry["created"][10] == " "
    assert client.get("/api/2.0/cohorts/list").status_code == 401


def test_projects_are_isolated(client: httpx.Client, small: dict[str, Any], database_url: str) -> None:
    other = new_project(database_url)
    cid = create(client, small, {"name": "mine", "definition": BOUGHT}).json()["id"]
    assert client.get(f"/api/cohorts/{cid}", headers=auth(other)).status_code == 404
    assert client.get("/api/cohorts", headers=auth(other)).json() == []
    assert client.get("/api/2.0/cohorts/list", headers=auth(other)).json() == []
    assert client.delete(f"/api/cohorts/{cid}", headers=auth(other)).status_code == 404
    reference = {"op": "and", "filters": [{"type": "cohort", "id": cid}]}
    refused = create(client, other, {"name": "theirs", "definition": reference})
    assert (
        refused.status_code == 400
        and refused.json()["detail"] == f"definition.filters[0].id: no cohort {cid} in this project"
    )
    engage = client.get(
        "/api/2.0/engage", params={"filter_by_cohort": json.dumps({"id": cid})}, headers=auth(other)
    )
    assert engage.status_code == 404 and "error" in engage.json()


@pytest.mark.parametrize(
    ("definition", "detail"),
    [
        (
            {
                "filters": [
                    PRO["filters"][0],
                    {"type": "event", "event": "X", "count": {"op": ">", "value": 1}},
                ]
            },
            "definition.filters[1].count.op: must be one of >=, <=, ==",
        ),
        (
            {"filters": [{"type": "event", "event": "X", "count": {"value": -1}}]},
            "definition.filters[0].count.value: input should be greater than or equal to 0",
        ),
        (
            {"filters": [{"op": "or", "filters": [{"type": "property", "where": 'properties["a" =='}]}]},
            'definition.filters[0].filters[0].where: syntax error at column 16: expected "]"',
        ),
        (
            {"filters": [{"type": "event", "event": "X", "window": {"last": 3}}]},
            'definition.filters[0].window: "last" and "unit" go together',
        ),
        (
            {"filters": [{"type": "event", "event": "X", "window": {"last": 3, "unit": "year"}}]},
            "definition.filters[0].window.unit: must be one of day, week, month",
        ),
        (
            {
                "filters": [
                    {"type": "event", "event": "X", "window": {"from": "2026-02-30", "to": "2026-03-01"}}
                ]
            },
            "definition.filters[0].window.from: input should be a valid date",
        ),
        (
            {"filters": [{"type": "mystery"}]},
            'definition.filters[0]: a filter needs "type" (property, event or cohort), or "op" and "filters"',
        ),
        (
            {"filters": [{"type": "property", "where": "true", "extra": 1}]},
            "definition.filters[0].extra: unknown field",
        ),
        ({"op": "xor", "filters": []}, "definition.op: must be one of and, or"),
    ],
)
def test_validation_errors_name_the_path(
    client: httpx.Client, project: dict[str, Any], definition: dict[str, Any], detail: str
) -> None:
    answer = create(client, project, {"name": "bad", "definition": definition})
    assert answer.status_code == 400
    assert answer.json()["error"] in ("BadRequest", "ExpressionError")
    assert answer.json()["detail"].startswith(detail), answer.json()["detail"]


def test_cycles_are_rejected(client: httpx.Client, project: dict[str, Any]) -> None:
    h = auth(project)
    a = create(client, project, {"name": "a", "definition": PRO}).json()["id"]
    b = create(
        client, project, {"name": "b", "definition": {"filters": [{"type": "cohort", "id": a}]}}
    ).json()["id"]
    nested = {"op": "and", "filters": [BOUGHT, {"op": "or", "filters": [{"type": "cohort", "id": b}]}]}
    answer = client.put(f"/api/cohorts/{a}", json={"definition": nested}, headers=h)
    assert answer.status_code == 400
    assert answer.json()["detail"] == (
        f"definition.filters[1].filters[0].(cohort {b}).filters[0].id:"
        f" cohort {a} refers back to itself (cycle {a} -> {b} -> {a})"
    )
    itself = client.put(
        f"/api/cohorts/{a}", json={"definition": {"filters": [{"type": "cohort", "id": a}]}}, headers=h
    )
    assert itself.status_code == 400 and "refers back to itself" in itself.json()["detail"]
    in_use = client.delete(f"/api/cohorts/{a}", headers=h)
    assert in_use.status_code == 409 and str(b) in in_use.json()["detail"]


def engage_ids(
    client: httpx.Client, project: dict[str, Any], **params: Any
) -> list[tuple[str, dict[str, Any]]]:
    answer = client.post("/api/2.0/engage", data=params, headers=auth(project))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["total"] == len(body["results"])
    return [(r["$distinct_id"], r["$properties"]) for r in body["results"]]


def test_engage_filter_by_cohort(client: httpx.Client, small: dict[str, Any]) -> None:
    cid = create(client, small, {"name": "buyers", "definition": BOUGHT}).json()["id"]
    by_id = json.dumps({"id": cid})
    assert engage_ids(client, small, filter_by_cohort=by_id) == [
        ("e1", {}),
        ("e2", {}),
        ("p1", {"plan": "pro"}),
    ]
    assert engage_ids(client, small, filter_by_cohort=by_id, include_all_users="false") == [
        ("p1", {"plan": "pro"})
    ]
    raw = json.dumps({"raw_cohort": {"op": "or", "filters": [BOUGHT, PRO]}})
    assert [d for d, _ in engage_ids(client, small, filter_by_cohort=raw)] == ["e1", "e2", "p1", "p3"]
    with_where = engage_ids(client, small, filter_by_cohort=raw, where='properties["plan"] == "pro"')
    assert [d for d, _ in with_where] == ["p1", "p3"]
    assert [d for d, _ in engage_ids(client, small, filter_by_cohort=raw, output_properties='["x"]')] == [
        "e1",
        "e2",
        "p1",
        "p3",
    ]
    bad = client.get(
        "/api/2.0/engage",
        params={"filter_by_cohort": '{"raw_cohort": {"filters": [{"type": 1}]}}'},
        headers=auth(small),
    )
    assert bad.status_code == 400 and bad.json()["error"].startswith(
        "filter_by_cohort: raw_cohort.filters[0]"
    )
    unknown = client.get(
        "/api/2.0/engage", params={"filter_by_cohort": '{"id": 999999}'}, headers=auth(small)
    )
    assert unknown.status_code == 404


def test_engage_pages_of_a_cohort_session(client: httpx.Client, small: dict[str, Any]) -> None:
    raw = json.dumps({"raw_cohort": {"op": "or", "filters": [BOUGHT, PRO]}})
    first = client.get(
        "/api/2.0/engage", params={"filter_by_cohort": raw, "page_size": 3}, headers=auth(small)
    ).json()
    assert first["total"] == 4 and [r["$distinct_id"] for r in first["results"]] == ["e1", "e2", "p1"]
    second = client.get(
        "/api/2.0/engage", params={"session_id": first["session_id"], "page": 1}, headers=auth(small)
    ).json()
    assert second["results"] == [{"$distinct_id": "p3", "$properties": {"plan": "pro"}}]


def test_engage_legacy_behaviors_parameter(client: httpx.Client, small: dict[str, Any]) -> None:
    behaviors = json.dumps([{"name": "b", "window": "30d", "event_selectors": [{"event": "Purchase"}]}])
    found = engage_ids(client, small, behaviors=behaviors, where='behaviors["b"] == 0')
    assert [d for d, _ in found] == ["p2", "p3"]  # profiles only, as Mixpanel answers behaviors


def test_profile_export_filter_by_cohort(client: httpx.Client, small: dict[str, Any]) -> None:
    raw = json.dumps({"raw_cohort": {"op": "or", "filters": [BOUGHT, PRO]}})
    jsonl = client.get(
        "/api/profiles/export", params={"format": "jsonl", "filter_by_cohort": raw}, headers=auth(small)
    )
    assert jsonl.status_code == 200
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert [(x["$distinct_id"], x["$properties"]) for x in lines] == [
        ("e1", {}),
        ("e2", {}),
        ("p1", {"plan": "pro"}),
        ("p3", {"plan": "pro"}),
    ]
    only = client.get(
        "/api/profiles/export",
        params={"filter_by_cohort": raw, "include_all_users": "false"},
        headers=auth(small),
    )
    rows = list(csv.reader(io.StringIO(only.text)))
    assert rows == [["$distinct_id", "plan"], ["p1", "pro"], ["p3", "pro"]]
    bad = client.get("/api/profiles/export", params={"filter_by_cohort": '{"id": "x"}'}, headers=auth(small))
    assert bad.status_code == 400 and bad.json()["detail"] == "filter_by_cohort: id: must be an integer"
