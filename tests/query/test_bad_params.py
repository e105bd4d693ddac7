"""Odd parameters on the read API are 400s naming the parameter, before the first byte of any stream (issue
10, finding 7): numbers beyond a double in expressions, NUL in any text, date ranges past the documented span,
integers past Postgres's bigint.  Never a 500, never a 200 cut short."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

Row = dict[str, Any]
BIG = "9" * 309  # past a double
HUGE = "9" * 5000  # past Python's int-from-text limit too
NUL = "must not contain a NUL character (\\u0000)"
COHORT_WITH_NUL = '{"raw_cohort": {"op": "and", "filters": [{"type": "event", "event": "a\\u0000"}]}}'


@pytest.fixture
def world(client: httpx.Client, project: Row) -> Row:
    update = {"$token": project["token"], "$distinct_id": "u1", "$set": {"a": 1, "plan": "pro"}}
    assert client.post("/engage", params={"verbose": "2"}, content=orjson.dumps([update])).status_code == 200
    return project


def get(client: httpx.Client, world: Row, path: str, **params: Any) -> httpx.Response:
    return client.get(path, params=params, auth=(world["api_secret"], ""))


def mixpanel_400(response: httpx.Response, parameter: str) -> str:
    """A 400 in the Mixpanel read paths' shape whose message starts with the parameter's name."""
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    message: str = response.json()["error"]
    assert message.startswith(f"{parameter}:"), message
    return message


ENGAGE: dict[str, tuple[dict[str, str], str, str]] = {
    "where: a 309-digit integer": ({"where": f'properties["a"] > {BIG}'}, "where", "number out of range"),
    "where: a 5000-digit integer": ({"where": f'properties["a"] == {HUGE}'}, "where", "out of range"),
    "where: in a list": ({"where": f'properties["a"] in [1, {BIG}]'}, "where", "number out of range"),
    "sort_key: a 309-digit integer": ({"sort_key": f'properties["a"] + {BIG}'}, "sort_key", "out of range"),
    "distinct_id with NUL": ({"distinct_id": "u\x001"}, "distinct_id", NUL),
    "distinct_ids with NUL": ({"distinct_ids": '["u1", "u\\u0000"]'}, "distinct_ids", NUL),
    "output_properties with NUL": ({"output_properties": '["a\\u0000"]'}, "output_properties", NUL),
    "data_group_id with NUL": ({"data_group_id": "company\x00"}, "data_group_id", NUL),
    "session_id with NUL": ({"session_id": "s\x00", "page": "1"}, "session_id", NUL),
    "filter_by_cohort with NUL": (
        {"filter_by_cohort": COHORT_WITH_NUL},
        "filter_by_cohort",
        NUL,
    ),
    "page past bigint": ({"session_id": "s", "page": str(2**63)}, "page", "must be an integer from"),
}


@pytest.mark.parametrize(("params", "parameter", "message"), ENGAGE.values(), ids=ENGAGE.keys())
def test_engage(
    params: dict[str, str], parameter: str, message: str, client: httpx.Client, world: Row
) -> None:
    for method in ("GET", "POST"):
        if method == "GET":
            response = get(client, world, "/api/2.0/engage", **params)
        else:
            response = client.post("/api/2.0/engage", data=params, auth=(world["api_secret"], ""))
        assert message in mixpanel_400(response, parameter)


def test_engage_json_body_with_nul(client: httpx.Client, world: Row) -> None:
    response = client.post(
        "/api/2.0/engage",
        json={"where": 'properties["a"] == 1', "distinct_ids": ["u\x00"]},
        auth=(world["api_secret"], ""),
    )
    assert NUL in mixpanel_400(response, "distinct_ids")


def test_a_page_past_bigint_of_a_real_session(client: httpx.Client, world: Row) -> None:
    first = get(client, world, "/api/2.0/engage", page_size="1")
    assert first.status_code == 200, first.text
    session = first.json()["session_id"]
    mixpanel_400(get(client, world, "/api/2.0/engage", session_id=session, page=str(2**70)), "page")


EXPORT_RANGE = {"from_date": "2025-01-01", "to_date": "2025-01-31"}
EXPORT: dict[str, tuple[dict[str, str], str, str]] = {
    "to_date 9999-12-31": (
        {"from_date": "2025-01-01", "to_date": "9999-12-31"},
        "to_date",
        "1970-01-01 to 2999-12-31",
    ),
    "from_date 0001-01-01": ({"from_date": "0001-01-01", "to_date": "2025-01-01"}, "from_date", "2999-12-31"),
    "event with NUL": ({**EXPORT_RANGE, "event": '["a\\u0000"]'}, "event", NUL),
    "where: a 309-digit integer": (
        {**EXPORT_RANGE, "where": f'properties["n"] == {BIG}'},
        "where",
        "out of range",
    ),
    "limit past bigint": (
        {**EXPORT_RANGE, "limit": str(2**64)},
        "limit",
        "must be an integer from 1 to 100000",
    ),
}


@pytest.mark.parametrize(("params", "parameter", "message"), EXPORT.values(), ids=EXPORT.keys())
def test_event_export(
    params: dict[str, str], parameter: str, message: str, client: httpx.Client, world: Row
) -> None:
    assert message in mixpanel_400(get(client, world, "/api/2.0/export", **params), parameter)


QUERY_RANGE = {"from_date": "2025-01-01", "to_date": "2025-01-31"}
QUERY: dict[str, tuple[dict[str, Any], str]] = {
    "to_date 9999-12-31": (
        {"from_date": "2025-01-01", "to_date": "9999-12-31"},
        "to_date: must be a day from",
    ),
    "events with NUL": ({**QUERY_RANGE, "events": ["a\x00"]}, f"events: {NUL}"),
    "group_by name with NUL": (
        {**QUERY_RANGE, "group_by": [{"type": "property", "name": "a\x00"}]},
        f"group_by: {NUL}",
    ),
    "cohort with NUL": (
        {
            **QUERY_RANGE,
            "cohort": {"raw_cohort": {"op": "and", "filters": [{"type": "event", "event": "\x00"}]}},
        },
        f"cohort: {NUL}",
    ),
}


@pytest.mark.parametrize(("body", "message"), QUERY.values(), ids=QUERY.keys())
def test_events_query(body: dict[str, Any], message: str, client: httpx.Client, world: Row) -> None:
    response = client.post("/api/events/query", json=body, auth=(world["api_secret"], ""))
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["error"] == "ValidationError"
    assert any(message in item["message"] for item in answer["detail"]), answer


def test_ingestion_warnings_after_id_past_bigint(client: httpx.Client, world: Row) -> None:
    response = get(client, world, "/api/ingestion-warnings", after_id=str(2**63))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "ValidationError"
    assert [item["field"] for item in response.json()["detail"]] == ["query.after_id"]
    assert get(client, world, "/api/ingestion-warnings", after_id=str(2**63 - 1)).status_code == 200


PROFILE_EXPORT: dict[str, tuple[dict[str, str], str]] = {
    "columns=a%00b": ({"columns": "a\x00b"}, "columns"),
    "columns as JSON with NUL": ({"columns": '["a\\u0000"]'}, "columns"),
    "data_group_id with NUL": ({"data_group_id": "g\x00"}, "data_group_id"),
    "where: a 309-digit integer": ({"where": f'properties["a"] == {BIG}'}, "where"),
    "filter_by_cohort with NUL": (
        {"filter_by_cohort": COHORT_WITH_NUL},
        "filter_by_cohort",
    ),
}


@pytest.mark.parametrize(("params", "parameter"), PROFILE_EXPORT.values(), ids=PROFILE_EXPORT.keys())
@pytest.mark.parametrize("format_", ["csv", "jsonl"])
def test_profile_export(
    params: dict[str, str], parameter: str, format_: str, client: httpx.Client, world: Row
) -> None:
    """A 400 before any byte of the stream: never a 200 cut off mid-stream."""
    with client.stream(
        "GET", "/api/profiles/export", params={"format": format_, **params}, auth=(world["api_secret"], "")
    ) as response:
        body = response.read()
    assert response.status_code == 400, body
    answer = orjson.loads(body)
    assert answer["error"] == "BadRequest" and answer["detail"].startswith(f"{parameter}:"), answer


# --- cohorts: definitions and bodies ------------------------------------------------------------------------

WINDOW_9999 = {
    "op": "and",
    "filters": [{"type": "event", "event": "e", "window": {"from": "2025-01-01", "to": "9999-12-31"}}],
}


def test_cohort_window_past_the_span(client: httpx.Client, world: Row) -> None:
    response = get(
        client, world, "/api/2.0/engage", filter_by_cohort=orjson.dumps({"raw_cohort": WINDOW_9999}).decode()
    )
    message = mixpanel_400(response, "filter_by_cohort")
    assert "must be days from 1970-01-01 to 2999-12-31" in message
    created = client.post(
        "/api/cohorts", json={"name": "w", "definition": WINDOW_9999}, auth=(world["api_secret"], "")
    )
    assert created.status_code == 400, created.text
    assert "must be days from 1970-01-01 to 2999-12-31" in created.text


@pytest.mark.parametrize(
    "body",
    [
        {"name": "n\x00", "distinct_ids": ["u1"]},
        {"name": "n", "description": "\x00", "distinct_ids": ["u1"]},
        {"name": "n", "distinct_ids": ["u1", "u\x00"]},
        {"name": "n", "definition": {"op": "and", "filters": [{"type": "event", "event": "e\x00"}]}},
    ],
    ids=["name", "description", "distinct_ids", "definition"],
)
def test_cohort_bodies_with_nul(body: Row, client: httpx.Client, world: Row) -> None:
    response = client.post("/api/cohorts", json=body, auth=(world["api_secret"], ""))
    assert response.status_code == 400, response.text
    [problem] = response.json()["detail"]
    assert problem["field"].startswith("body.") and NUL in problem["message"], problem


def test_cohort_members_after_with_nul(client: httpx.Client, world: Row) -> None:
    auth = (world["api_secret"], "")
    created = client.post("/api/cohorts", json={"name": "static", "distinct_ids": ["u1"]}, auth=auth)
    assert created.status_code in (200, 201), created.text
    response = get(client, world, f"/api/cohorts/{created.json()['id']}/members", after="u\x00")
    assert response.status_code == 400, response.text
    assert response.json() == {"error": "BadRequest", "detail": f"after: {NUL}"}
