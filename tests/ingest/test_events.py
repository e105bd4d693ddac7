"""/track end to end over HTTP (docs/ingest.md section 5), each case checked against the stored rows."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from events_support import event, events_of, seen_of
from test_transports import FORMS

Row = dict[str, Any]
T0 = 1_732_300_000


def _on_track(form: Callable[[list[Row]], Row]) -> Callable[[list[Row]], Row]:
    def call(recs: list[Row]) -> Row:
        kwargs = form(recs)
        return {**kwargs, "url": kwargs["url"].replace("/engage", "/track")}

    return call


def two_events(token: str) -> list[Row]:
    return [
        event(token, "Signed up", distinct_id="u1", time=T0, **{"$insert_id": "a1", "plan": "+/ >>>???"}),
        event(token, "Paid", distinct_id="u2", time=T0 + 1, **{"$insert_id": "a2", "amount": 9.5}),
    ]


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_every_transport_form(
    form: Any, client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    recs = two_events(project["token"])
    response = client.request(**_on_track(form)(recs))
    assert (response.status_code, response.text) == (200, "1")
    rows = events_of(db, project["id"])
    assert [(r["event"], r["distinct_id"], r["time"], r["insert_id"]) for r in rows] == [
        ("Signed up", "u1", T0, "a1"),
        ("Paid", "u2", T0 + 1, "a2"),
    ]
    assert rows[0]["properties"] == {"distinct_id": "u1", "time": T0, "$insert_id": "a1", "plan": "+/ >>>???"}


def test_single_object_and_verbose(client: httpx.Client, project: Row, db: psycopg.Connection[Row]) -> None:
    response = client.post("/track", json=event(project["token"], distinct_id="u1"), params={"verbose": "1"})
    assert response.json() == {"status": 1, "error": None}
    assert len(events_of(db, project["id"])) == 1


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        (T0, T0),
        (T0 * 1000 + 250, T0 + 0.25),
        (T0 + 0.123456, T0 + 0.123456),
        ("2024-11-22T18:26:40Z", T0),
        (str(T0), T0),
    ],
    ids=["seconds", "milliseconds", "float seconds", "ISO 8601", "numeric text"],
)
def test_time_forms(
    sent: Any, stored: float, client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    assert client.post("/track", json=[event(project["token"], distinct_id="u1", time=sent)]).text == "1"
    assert events_of(db, project["id"])[0]["time"] == pytest.approx(stored, abs=1e-6)


def test_time_absent_is_receipt(client: httpx.Client, project: Row, db: psycopg.Connection[Row]) -> None:
    before = time.time()
    assert client.post("/track", json=[event(project["token"], distinct_id="u1")]).text == "1"
    assert before - 1 <= events_of(db, project["id"])[0]["time"] <= time.time() + 1


def test_retried_batch_is_stored_once_latest_copy_kept(
    client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    batch = [
        event(project["token"], "E", distinct_id=f"u{i}", time=T0 + i, **{"$insert_id": f"id-{i}"})
        for i in range(50)
    ]
    assert client.post("/track", json=batch).text == "1"
    for record in batch:
        record["properties"]["retry"] = True
    assert client.post("/track", json=batch).text == "1"
    rows = events_of(db, project["id"])
    assert len(rows) == 50
    assert all(r["properties"]["retry"] is True for r in rows)


def test_duplicate_within_a_request_keeps_the_later(
    client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    first = event(project["token"], "E", distinct_id="u1", time=T0, **{"$insert_id": "x", "n": 1})
    second = event(project["token"], "E", distinct_id="u1", time=T0, **{"$insert_id": "x", "n": 2})
    response = client.post("/track", json=[first, second], params={"verbose": "2"})
    assert response.json() == {"code": 200, "status": "OK", "num_records_imported": 2}
    assert [r["properties"]["n"] for r in events_of(db, project["id"])] == [2]


def test_events_without_insert_id_are_not_deduplicated(
    client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    same = event(project["token"], "E", distinct_id="u1", time=T0)
    assert client.post("/track", json=[same, same]).text == "1"
    rows = events_of(db, project["id"])
    assert len(rows) == 2
    assert rows[0]["insert_id"] is None


@pytest.mark.parametrize(
    "distinct_id",
    [
        "undefined",
        "NULL",
        "anonymous",
        "0",
        "-1",
        "[]",
        "{}",
        "00000000-0000-0000-0000-000000000000",
        "None",
        0,
        -1,
    ],
)
def test_placeholder_ids_are_invalid(
    distinct_id: Any, client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    good = event(project["token"], distinct_id="real")
    bad = event(project["token"], distinct_id=distinct_id)
    response = client.post("/track", json=[good, bad], params={"strict": "1"})
    assert response.status_code == 400
    body = response.json()
    assert body["num_records_imported"] == 1
    assert [(f["index"], f["field"]) for f in body["failed_records"]] == [(1, "properties.distinct_id")]
    assert [r["distinct_id"] for r in events_of(db, project["id"])] == ["real"]


@pytest.mark.parametrize("props", [{}, {"distinct_id": ""}], ids=["missing", "empty"])
def test_event_without_user(
    props: Row, client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    assert client.post("/track", json=[event(project["token"], **props)]).text == "1"
    assert [r["distinct_id"] for r in events_of(db, project["id"])] == [""]
    assert seen_of(db, project["id"]) == {}


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"properties": {"distinct_id": "u"}}, "event"),
        ({"event": "", "properties": {"distinct_id": "u"}}, "event"),
        ({"event": "x" * 256, "properties": {"distinct_id": "u"}}, "event"),
        ({"event": 5, "properties": {"distinct_id": "u"}}, "event"),
        ({"event": "E", "properties": {"distinct_id": "u", "time": time.time() + 7200}}, "properties.time"),
        ({"event": "E", "properties": {"distinct_id": "u", "time": 31_535_999}}, "properties.time"),
        ({"event": "E", "properties": {"distinct_id": "u", "time": "yesterday"}}, "properties.time"),
        (
            {"event": "E", "properties": {"distinct_id": "u", "$insert_id": "has space"}},
            "properties.$insert_id",
        ),
        ({"event": "E", "properties": {"distinct_id": "u", "$insert_id": "a" * 37}}, "properties.$insert_id"),
        (
            {"event": "E", "properties": {"distinct_id": "u", **{f"p{i}": i for i in range(256)}}},
            "properties",
        ),
        ({"event": "E", "properties": {"distinct_id": ["u"]}}, "properties.distinct_id"),
    ],
    ids=[
        "no name",
        "empty name",
        "long name",
        "number name",
        "2h future",
        "before 1971",
        "bad time",
        "bad insert_id",
        "long insert_id",
        "256 properties",
        "list id",
    ],
)
def test_invalid_events(
    record: Row, field: str, client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    record["properties"]["token"] = project["token"]
    response = client.post("/track", json=[record], params={"verbose": "2"})
    assert response.status_code == 400, response.text
    assert response.json()["failed_records"][0]["field"] == field
    assert events_of(db, project["id"]) == []


def test_half_an_hour_ahead_and_255_properties_are_valid(
    client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    props = {f"p{i}": i for i in range(253)}
    record = event(project["token"], distinct_id="u", time=time.time() + 1800, **props)
    assert len(record["properties"]) == 256  # 255 and the token
    assert client.post("/track", json=[record]).text == "1"
    assert len(events_of(db, project["id"])) == 1


def test_unknown_and_missing_token(client: httpx.Client, project: Row, db: psycopg.Connection[Row]) -> None:
    recs = [event("no-such-token", distinct_id="u1"), event(None, distinct_id="u2")]
    response = client.post("/track", json=recs, params={"verbose": "1"})
    assert response.json()["status"] == 0
    assert "unknown project token" in response.json()["error"]
    assert "properties.token: is required" in response.json()["error"]


def test_2001_events(client: httpx.Client, project: Row, db: psycopg.Connection[Row]) -> None:
    recs = [event(project["token"], distinct_id=f"u{i % 7}", time=T0 + i) for i in range(2001)]
    response = client.post("/track", json=recs, params={"strict": "1"})
    assert response.status_code == 400
    body = response.json()
    assert body["num_records_imported"] == 2000
    assert [f["index"] for f in body["failed_records"]] == [2000]
    assert len(events_of(db, project["id"])) == 2000


def test_one_megabyte_event(client: httpx.Client, project: Row, db: psycopg.Connection[Row]) -> None:
    fits = event(project["token"], distinct_id="u1", blob="x" * 999_000)
    over = event(project["token"], distinct_id="u2", blob="x" * 1_000_001)
    response = client.post("/track", json=[fits, over], params={"strict": "1"})
    assert response.status_code == 400
    assert [f["index"] for f in response.json()["failed_records"]] == [1]
    rows = events_of(db, project["id"])
    assert [r["distinct_id"] for r in rows] == ["u1"]
    assert len(rows[0]["properties"]["blob"]) == 999_000


def test_nul_character_fails_only_its_event(
    client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    recs = [
        event(project["token"], distinct_id="u1"),
        event(project["token"], distinct_id="u2", bad="a\u0000b"),
    ]
    response = client.post("/track", json=recs, params={"strict": "1"})
    assert response.status_code == 400
    assert [f["index"] for f in response.json()["failed_records"]] == [1]
    assert [r["distinct_id"] for r in events_of(db, project["id"])] == ["u1"]


def test_users_seen_first_and_last(client: httpx.Client, project: Row, db: psycopg.Connection[Row]) -> None:
    token = project["token"]
    recs = [event(token, distinct_id="u1", time=T0 + 10), event(token, distinct_id="u1", time=T0 + 20)]
    assert client.post("/track", json=recs).text == "1"
    assert seen_of(db, project["id"]) == {"u1": (T0 + 10, T0 + 20)}
    later = [event(token, distinct_id="u1", time=T0 + 5), event(token, distinct_id="u2", time=T0)]
    assert client.post("/track", json=later).text == "1"
    assert seen_of(db, project["id"]) == {"u1": (T0 + 5, T0 + 20), "u2": (T0, T0)}


def test_options(client: httpx.Client) -> None:
    for path in ("/track", "/track/", "/import", "/import/"):
        response = client.options(path, headers={"Origin": "https://app.example"})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example"


def test_track_refuses_numbers_a_double_cannot_hold(
    client: httpx.Client, project: dict[str, Any], db: psycopg.Connection[dict[str, Any]]
) -> None:
    token = project["token"]
    big = 18446744073709551616
    body = (
        f'[{{"event": "big", "properties": {{"token": "{token}", "distinct_id": "u1", "n": {big}}}}},'
        f' {{"event": "ok", "properties": {{"token": "{token}", "distinct_id": "u1", "n": 1}}}}]'
    )
    response = client.post(
        "/track", params={"verbose": "2"}, content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    [failure] = response.json()["failed_records"]
    assert (failure["index"], failure["field"]) == (0, "properties.n")
    names = [
        r["event"] for r in db.execute("SELECT event FROM events WHERE project_id = %s", (project["id"],))
    ]
    assert names == ["ok"]
