"""One hostile record costs only itself (issue 10, finding 6): depth and content are checked per record
before anything that recurses or reaches Postgres, the record is refused naming its field, and the good
records beside it are stored.  Never a 500, never Postgres's own words in an answer."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import psycopg
import pytest
from events_support import event, events_of

from support import profiles_of

Row = dict[str, Any]
DB = psycopg.Connection[Row]
JSON = {"content-type": "application/json"}
NUL = "must not contain a NUL character (\\u0000): Postgres cannot store one"
NOT_UTF8 = "must be valid UTF-8 text (no lone surrogate \\ud800-\\udfff)"


def nested(levels: int, leaf: str = "1") -> str:
    """JSON text of `leaf` inside `levels` lists."""
    return "[" * levels + leaf + "]" * levels


def engage(client: httpx.Client, body: str | bytes) -> httpx.Response:
    response = client.post("/engage", params={"verbose": "2"}, content=body, headers=JSON)
    assert response.status_code in (200, 400), response.text
    return response


def good_update(token: str) -> str:
    return json.dumps({"$token": token, "$distinct_id": "good", "$set": {"ok": True}})


def one_failure(response: httpx.Response) -> Row:
    body = response.json()
    assert body["num_records_imported"] == 1, body
    [failure] = body["failed_records"]
    assert "database" not in failure["message"] and "Error" not in failure["message"]
    return dict(failure)


def profiles(db: DB, project: Row) -> dict[str, Row]:
    return {d: p["properties"] for d, p in profiles_of(db, project["id"]).items()}


# --- /engage: each bad record between two copies of a good one is the only one refused ----------------

# id -> (the bad record's JSON with {token} in it, the field named, the message or a part of it)
BAD_UPDATES: dict[str, tuple[str, str, str]] = {
    "$set value nested 900 levels": (
        '{"$token": "{token}", "$distinct_id": "bad", "$set": {"deep": ' + nested(900) + "}}",
        "$set.deep",
        "values nest at most 3 levels",
    ),
    "$set value nested 2,000 levels (past orjson's reader)": (
        '{"$token": "{token}", "$distinct_id": "bad", "$set": {"deep": ' + nested(2000) + "}}",
        "",
        "nests too deeply to be read",
    ),
    "long number at depth 990, in $set": (
        '{"$token": "{token}", "$distinct_id": "bad", "$set": {"deep": '
        + nested(990, "12345678901234567890123")
        + "}}",
        "$set.deep",
        "values nest at most 3 levels",
    ),
    "$token with NUL": (
        '{"$token": "{token}\\u0000", "$distinct_id": "bad", "$set": {"a": 1}}',
        "$token",
        NUL,
    ),
    "$distinct_id with NUL": (
        '{"$token": "{token}", "$distinct_id": "b\\u0000d", "$set": {"a": 1}}',
        "$distinct_id",
        NUL,
    ),
    "property name with NUL": (
        '{"$token": "{token}", "$distinct_id": "bad", "$set": {"a\\u0000": 1}}',
        "$set.a\x00",
        NUL,
    ),
    "$unset name with NUL": (
        '{"$token": "{token}", "$distinct_id": "bad", "$unset": ["a\\u0000"]}',
        "$unset[0]",
        NUL,
    ),
    "value with NUL inside a list": (
        '{"$token": "{token}", "$distinct_id": "bad", "$union": {"l": ["x", "y\\u0000"]}}',
        "$union.l[1]",
        NUL,
    ),
    "lone surrogate": (
        '{"$token": "{token}", "$distinct_id": "bad", "$set": {"a": "\\ud800"}}',
        "$set.a",
        NOT_UTF8,
    ),
    "lone low surrogate in a name": (
        '{"$token": "{token}", "$distinct_id": "bad", "$set": {"\\udc00x": 1}}',
        "$set.\\udc00x",
        NOT_UTF8,
    ),
    "1e400": (
        '{"$token": "{token}", "$distinct_id": "bad", "$set": {"n": 1e400}}',
        "$set.n",
        "the number 1e400 cannot be stored",
    ),
    "-1e400": (
        '{"$token": "{token}", "$distinct_id": "bad", "$add": {"n": -1e400}}',
        "$add.n",
        "cannot be stored",
    ),
    "1e-400 (reads as 0)": (
        '{"$token": "{token}", "$distinct_id": "bad", "$set": {"n": 1e-400}}',
        "$set.n",
        "the number 1e-400 cannot be stored",
    ),
    "a 400-digit integer": (
        '{"$token": "{token}", "$distinct_id": "bad", "$set": {"n": ' + "9" * 400 + "}}",
        "$set.n",
        "cannot be stored exactly",
    ),
    "$time before year 1 (1200 BC)": (
        '{"$token": "{token}", "$distinct_id": "bad", "$time": -100000000000000, "$set": {"a": 1}}',
        "$time",
        "must not be before year 1",
    ),
    "$time -1e17 (Postgres: timestamp out of range)": (
        '{"$token": "{token}", "$distinct_id": "bad", "$time": -1e17, "$set": {"a": 1}}',
        "$time",
        "must not be before year 1",
    ),
    "$time -1e308 as text": (
        '{"$token": "{token}", "$distinct_id": "bad", "$time": "-1e308", "$set": {"a": 1}}',
        "$time",
        "year 1",
    ),
    "$ip nested 600 levels (ignored) and a NUL in a value": (
        '{"$token": "{token}", "$distinct_id": "bad", "$ip": ' + nested(600) + ', "$set": {"a": "\\u0000"}}',
        "$set.a",
        NUL,
    ),
}


@pytest.mark.parametrize(("bad", "field", "message"), BAD_UPDATES.values(), ids=BAD_UPDATES.keys())
def test_bad_update_costs_only_itself(
    bad: str, field: str, message: str, client: httpx.Client, project: Row, db: DB
) -> None:
    token = project["token"]
    body = f"[{good_update(token)}, {bad.replace('{token}', token)}]"
    failure = one_failure(engage(client, body))
    assert (failure["index"], failure["field"]) == (1, field), failure
    assert message in failure["message"]
    assert profiles(db, project) == {"good": {"ok": True}}


def test_invalid_utf8_bytes_cost_only_their_record(client: httpx.Client, project: Row, db: DB) -> None:
    token = project["token"]
    bad = b'{"$token": "' + token.encode() + b'", "$distinct_id": "bad", "$set": {"a": "\xff\xfe"}}'
    body = b"[" + good_update(token).encode() + b", " + bad + b"]"
    failure = one_failure(engage(client, body))
    assert (failure["index"], failure["$distinct_id"], failure["field"]) == (1, "bad", "$set.a")
    assert failure["message"] == NOT_UTF8
    assert profiles(db, project) == {"good": {"ok": True}}


def test_a_lone_surrogate_in_the_id_is_reported_escaped(client: httpx.Client, project: Row) -> None:
    token = project["token"]
    bad = '{"$token": "' + token + '", "$distinct_id": "\\ud800", "$set": {"a": 1}}'
    failure = one_failure(engage(client, f"[{good_update(token)}, {bad}]"))
    assert (failure["$distinct_id"], failure["field"], failure["message"]) == (
        "\\ud800",
        "$distinct_id",
        NOT_UTF8,
    )


def test_a_truncated_or_broken_array_stays_unreadable(client: httpx.Client, project: Row, db: DB) -> None:
    token = project["token"]
    for body in (
        f"[{good_update(token)}, " + '{"$token": "x", "$set": {"a": "\\ud800"',  # cut short
        f"[{good_update(token)} {good_update(token)}]",  # no comma
        f"[{good_update(token)}, ]",  # an empty element
        f'[{good_update(token)}, {{"$token": oops}}]',  # a syntax error in one element
    ):
        response = engage(client, body)
        assert response.status_code == 400
        assert response.json()["failed_records"] == [] and response.json()["error"]
    assert profiles(db, project) == {}


def test_year_1_is_taken(client: httpx.Client, project: Row, db: DB) -> None:
    update = {"$token": project["token"], "$distinct_id": "old", "$time": -62135596800, "$set": {"a": 1}}
    response = client.post("/engage", params={"verbose": "2"}, json=[update])
    assert response.status_code == 200, response.text
    assert profiles_of(db, project["id"])["old"]["last_seen"] == -62135596800


# --- /track and /groups ---------------------------------------------------------------------------------

BAD_EVENTS: dict[str, tuple[str, str, str]] = {
    "property nested 300 levels": (
        '{"event": "e", "properties": {"token": "{token}", "distinct_id": "bad", "x": ' + nested(300) + "}}",
        "properties.x",
        "values nest at most 64 levels",
    ),
    "property nested 65 levels": (
        '{"event": "e", "properties": {"token": "{token}", "distinct_id": "bad", "x": ' + nested(65) + "}}",
        "properties.x",
        "values nest at most 64 levels",
    ),
    "token with NUL": (
        '{"event": "e", "properties": {"token": "{token}\\u0000", "distinct_id": "bad"}}',
        "properties.token",
        NUL,
    ),
    "event name with NUL": (
        '{"event": "e\\u0000", "properties": {"token": "{token}", "distinct_id": "bad"}}',
        "event",
        NUL,
    ),
    "distinct_id with NUL": (
        '{"event": "e", "properties": {"token": "{token}", "distinct_id": "b\\u0000"}}',
        "properties.distinct_id",
        NUL,
    ),
    "property name with NUL": (
        '{"event": "e", "properties": {"token": "{token}", "distinct_id": "bad", "\\u0000": 1}}',
        "properties.\x00",
        NUL,
    ),
    "1e400": (
        '{"event": "e", "properties": {"token": "{token}", "distinct_id": "bad", "n": 1e400}}',
        "properties.n",
        "cannot be stored",
    ),
}


@pytest.mark.parametrize(("bad", "field", "message"), BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
def test_bad_event_costs_only_itself(
    bad: str, field: str, message: str, client: httpx.Client, project: Row, db: DB
) -> None:
    token = project["token"]
    good = json.dumps(event(token, distinct_id="good", time=int(time.time())))
    body = f"[{good}, {bad.replace('{token}', token)}]"
    response = client.post("/track", params={"verbose": "2"}, content=body, headers=JSON)
    assert response.status_code == 400, response.text
    failure = one_failure(response)
    assert (failure["index"], failure["field"]) == (1, field), failure
    assert message in failure["message"]
    assert [r["distinct_id"] for r in events_of(db, project["id"])] == ["good"]


def test_event_nested_64_levels_is_stored(client: httpx.Client, project: Row, db: DB) -> None:
    body = json.dumps([event(project["token"], distinct_id="deep", x=json.loads(nested(64)))])
    response = client.post("/track", params={"verbose": "2"}, content=body, headers=JSON)
    assert response.status_code == 200, response.text
    [row] = events_of(db, project["id"])
    assert row["properties"]["x"] == json.loads(nested(64))


def test_group_key_with_nul(client: httpx.Client, project: Row, db: DB) -> None:
    token = project["token"]
    records = [
        {"$token": token, "$group_key": "company", "$group_id": "good", "$set": {"a": 1}},
        {"$token": token, "$group_key": "comp\u0000any", "$group_id": "bad", "$set": {"a": 1}},
    ]
    response = client.post("/groups", params={"verbose": "2"}, json=records)
    assert response.status_code == 400, response.text
    [failure] = response.json()["failed_records"]
    assert (failure["index"], failure["$group_id"], failure["field"], failure["message"]) == (
        1,
        "bad",
        "$group_key",
        NUL,
    )
    rows = db.execute(
        "SELECT group_id FROM group_profiles WHERE project_id = %s", (project["id"],)
    ).fetchall()
    assert [r["group_id"] for r in rows] == ["good"]


def test_import_api_key_with_nul_is_401(client: httpx.Client) -> None:
    response = client.post("/import", params={"api_key": "secret\x00"}, json=[])
    assert response.status_code == 401, response.text
