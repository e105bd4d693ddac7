"""Bad input gets the answer of docs/ingest.md section 2, never a 500; the valid records beside it are
stored."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import time
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from profilestore import projects
from profilestore.db.engine import libpq_dsn
from support import profiles_of

Row = dict[str, Any]
DB = psycopg.Connection[Row]
STRICT_400 = {
    "code": 400,
    "status": "Bad Request",
    "error": "some data points in the request failed validation",
}
DEEP4 = [[[[1]]]]
BIG_LIST = ["x" * 1000] * 300  # about 300 KB


@pytest.fixture
def other(database_url: str) -> Row:
    async def create() -> Row:
        async with await psycopg.AsyncConnection.connect(
            libpq_dsn(database_url), autocommit=True, row_factory=psycopg.rows.dict_row
        ) as conn:
            return await projects.create_project(conn, f"other-{uuid.uuid4().hex[:12]}")

    return asyncio.run(create())


def good(token: str, distinct_id: str = "good") -> Row:
    return {"$token": token, "$distinct_id": distinct_id, "$set": {"ok": True}}


def stored(db: DB, project: Row) -> dict[str, Row]:
    return {d: p["properties"] for d, p in profiles_of(db, project["id"]).items()}


OBJECT, NUMBER, LIST = "must be an object", "must be a number", "must be a list"
LONG_NAME, DEPTH = "property names must be at most 255 characters", "values nest at most 3 levels"
TOO_BIG, TIME_TYPE = "a list or object value is at most 256000 bytes", "must be a number or an ISO 8601 date"
TIME_VALUE = "must be epoch seconds or milliseconds, or an ISO 8601 date"
NO_OP = "has no operation ($set, $set_once, $add, $union, $append, $remove, $unset, $delete)"
# id -> (the bad record without its $token, failed field, message); the bad record is sent second.
BAD_RECORDS: dict[str, tuple[Row, str, str]] = {
    "$set not an object": ({"$set": [1, 2]}, "$set", OBJECT),
    "$set a string": ({"$set": "plan"}, "$set", OBJECT),
    "$set_once not an object": ({"$set_once": 5}, "$set_once", OBJECT),
    "$add with a string": ({"$add": {"n": "5"}}, "$add.n", NUMBER),
    "$add with a boolean": ({"$add": {"n": True}}, "$add.n", NUMBER),
    "$add with null": ({"$add": {"n": None}}, "$add.n", NUMBER),
    "$add not an object": ({"$add": 5}, "$add", OBJECT),
    "$union not an object": ({"$union": ["a"]}, "$union", OBJECT),
    "$append not an object": ({"$append": "a"}, "$append", OBJECT),
    "$remove not an object": ({"$remove": 1}, "$remove", OBJECT),
    "$unset a number": ({"$unset": 5}, "$unset", LIST),
    "$unset an object": ({"$unset": {"a": 1}}, "$unset", LIST),
    "$time garbage": ({"$time": "soon", "$set": {}}, "$time", TIME_VALUE),
    "$time an object": ({"$time": {"s": 1}, "$set": {}}, "$time", TIME_TYPE),
    "$time a boolean": ({"$time": True, "$set": {}}, "$time", TIME_TYPE),
    "$delete with $set": ({"$delete": "", "$set": {"a": 1}}, "$delete", "must stand alone (found $set)"),
    "no operation": ({"$ignore_time": True}, "", NO_OP),
    "property name over 255": ({"$set": {"p" * 256: 1}}, "$set." + "p" * 256, LONG_NAME),
    "empty property name": ({"$add": {"": 1}}, "$add.", "property names must not be empty"),
    "$unset name over 255": ({"$unset": ["a", "p" * 256]}, "$unset.1", LONG_NAME),
    "$set nested 4 levels": ({"$set": {"deep": DEEP4}}, "$set.deep", DEPTH),
    "$set_once object nested 4 levels": ({"$set_once": {"o": {"a": {"b": {"c": {}}}}}}, "$set_once.o", DEPTH),
    "$append nested 4 levels": ({"$append": {"deep": DEEP4}}, "$append.deep", DEPTH),
    "$union nested 4 levels": ({"$union": {"deep": DEEP4}}, "$union.deep", DEPTH),
    "$set list over 256 KB": ({"$set": {"big": BIG_LIST}}, "$set.big", TOO_BIG),
    "$union list over 256 KB": ({"$union": {"big": BIG_LIST}}, "$union.big", TOO_BIG),
}


@pytest.mark.parametrize(("bad", "field", "message"), BAD_RECORDS.values(), ids=BAD_RECORDS.keys())
def test_bad_record_beside_a_good_one(
    bad: Row, field: str, message: str, client: httpx.Client, project: Row, db: DB
) -> None:
    batch = [good(project["token"]), {"$token": project["token"], "$distinct_id": "bad", **bad}]
    response = client.post("/engage", params={"verbose": "2"}, json=batch)
    assert response.status_code == 400, response.text
    failed = {"index": 1, "$distinct_id": "bad", "field": field, "message": message}
    assert response.json() == {**STRICT_400, "num_records_imported": 1, "failed_records": [failed]}
    assert stored(db, project) == {"good": {"ok": True}}


# id -> ($distinct_id, message): the record holding it is sent first, a good one second.
BAD_IDS: dict[str, tuple[Any, str]] = {
    "empty": ("", "must not be empty"),
    "blank": ("   ", "must not be empty"),
    "256 characters": ("d" * 256, "must be at most 255 characters"),
    "an object": ({"a": 1}, "must be a string or a number"),
    "a list": (["u1"], "must be a string or a number"),
    "a boolean": (True, "must be a string or a number"),
    "null": (None, "must be a string or a number"),
}


@pytest.mark.parametrize(("distinct_id", "message"), BAD_IDS.values(), ids=BAD_IDS.keys())
def test_bad_distinct_id(distinct_id: Any, message: str, client: httpx.Client, project: Row, db: DB) -> None:
    bad = {"$token": project["token"], "$distinct_id": distinct_id, "$set": {"a": 1}}
    response = client.post("/engage", params={"verbose": "2"}, json=[bad, good(project["token"])])
    assert response.status_code == 400, response.text
    [failed] = response.json()["failed_records"]
    assert (failed["index"], failed["field"], failed["message"]) == (0, "$distinct_id", message)
    assert response.json()["num_records_imported"] == 1
    assert stored(db, project) == {"good": {"ok": True}}


def test_missing_fields(client: httpx.Client, project: Row, db: DB) -> None:
    batch = [
        {"$distinct_id": "no-token", "$set": {"a": 1}},
        {"$token": project["token"], "$set": {"a": 1}},
        good(project["token"]),
        "not an object",
        {"$token": 12345, "$distinct_id": "token-a-number", "$set": {"a": 1}},
    ]
    response = client.post("/engage", params={"verbose": "2"}, json=batch)
    assert response.status_code == 400
    assert response.json() == {
        **STRICT_400,
        "num_records_imported": 1,
        "failed_records": [
            {"index": 0, "$distinct_id": "no-token", "field": "$token", "message": "is required"},
            {"index": 1, "$distinct_id": None, "field": "$distinct_id", "message": "is required"},
            {"index": 3, "$distinct_id": None, "field": "", "message": "must be a JSON object"},
            {"index": 4, "$distinct_id": "token-a-number", "field": "$token", "message": "must be a string"},
        ],
    }
    assert stored(db, project) == {"good": {"ok": True}}


def test_unknown_token_fails_only_its_record(client: httpx.Client, project: Row, other: Row, db: DB) -> None:
    batch = [
        {"$token": "no-such-token", "$distinct_id": "stranger", "$set": {"a": 1}},
        good(project["token"]),
        good(other["token"], "other"),
    ]
    response = client.post("/engage", params={"verbose": "2"}, json=batch)
    assert response.status_code == 400
    failed = {"index": 0, "$distinct_id": "stranger", "field": "$token", "message": "unknown project token"}
    assert response.json() == {**STRICT_400, "num_records_imported": 2, "failed_records": [failed]}
    assert stored(db, project) == {"good": {"ok": True}}
    assert stored(db, other) == {"other": {"ok": True}}


ADD_N = {"index": 0, "$distinct_id": "bad", "field": "$add.n", "message": "must be a number"}
SUMMARY = "records failed: [0] $add.n: must be a number"


@pytest.mark.parametrize(
    ("params", "with_good", "status", "answer"),
    [
        ({}, True, 200, 1),
        ({}, False, 200, 0),
        ({"verbose": "1"}, True, 200, {"status": 1, "error": f"1 of 2 {SUMMARY}"}),
        ({"verbose": "1"}, False, 200, {"status": 0, "error": f"1 of 1 {SUMMARY}"}),
        ({"strict": "1"}, True, 400, {**STRICT_400, "num_records_imported": 1, "failed_records": [ADD_N]}),
        ({"strict": "1"}, False, 400, {**STRICT_400, "num_records_imported": 0, "failed_records": [ADD_N]}),
    ],
    ids=[f"{m} {w}" for m in ("verbose=0", "verbose=1", "strict=1") for w in ("some invalid", "none valid")],
)
def test_modes(
    params: dict[str, str],
    with_good: bool,
    status: int,
    answer: Any,
    client: httpx.Client,
    project: Row,
    db: DB,
) -> None:
    bad = {"$token": project["token"], "$distinct_id": "bad", "$add": {"n": "x"}}
    batch = [bad, good(project["token"])] if with_good else [bad]
    response = client.post("/engage", params=params, json=batch)
    assert (response.status_code, response.json()) == (status, answer)
    assert stored(db, project) == ({"good": {"ok": True}} if with_good else {})


# --- unreadable bodies --------------------------------------------------------------------------------------

JSON_CT = {"content-type": "application/json"}
FORM_CT = {"content-type": "application/x-www-form-urlencoded"}
GZIP_JSON = {**JSON_CT, "content-encoding": "gzip"}
UNREADABLE: dict[str, dict[str, Any]] = {
    "invalid JSON": {"content": b'[{"$token": "t", ', "headers": JSON_CT},
    "invalid JSON in a form": {"data": {"data": '{"$token": oops}'}},
    "invalid base64 in a form": {"data": {"data": "!!!not*base64!!!"}},
    "invalid base64 in the query": {"params": {"data": "%%%zz"}, "method": "GET"},
    "base64 of something not JSON": {"data": {"data": base64.b64encode(b"hello world").decode()}},
    "a JSON scalar": {"content": b"42", "headers": JSON_CT},
    "an empty array": {"content": b"[]", "headers": JSON_CT},
    "empty JSON body": {"content": b"", "headers": JSON_CT},
    "empty form body": {"content": b"", "headers": FORM_CT},
    "whitespace body": {"content": b" \n ", "headers": JSON_CT},
    "form without data": {"data": {"verbose_typo": "1"}},
    "empty data field": {"data": {"data": ""}},
    "GET without data": {"method": "GET"},
    "not UTF-8 form": {"content": b"data=\xff\xfe", "headers": FORM_CT},
    "not gzip": {"content": b"[{}]", "headers": GZIP_JSON},
    "truncated gzip": {"content": gzip.compress(b"[" * 1000)[:20], "headers": GZIP_JSON},
}


@pytest.mark.parametrize("request_", UNREADABLE.values(), ids=UNREADABLE.keys())
@pytest.mark.parametrize(
    "mode", [{}, {"verbose": "1"}, {"strict": "1"}], ids=["verbose=0", "verbose=1", "strict=1"]
)
def test_unreadable_body(request_: dict[str, Any], mode: dict[str, str], client: httpx.Client) -> None:
    kwargs = {"method": "POST", **request_}
    kwargs["params"] = {**kwargs.get("params", {}), **mode}
    response = client.request(url="/engage", **kwargs)
    if not mode:
        assert (response.status_code, response.text) == (200, "0")
        return
    body = response.json()
    error = body.pop("error")
    assert isinstance(error, str) and error  # says why, in plain words
    if "verbose" in mode:
        assert (response.status_code, body) == (200, {"status": 0})
    else:
        empty = {"code": 400, "status": "Bad Request", "num_records_imported": 0, "failed_records": []}
        assert (response.status_code, body) == (400, empty)


# --- limits -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["plain", "gzip"])
def test_record_over_1_mb(encoding: str, client: httpx.Client, project: Row, db: DB) -> None:
    big = {"$token": project["token"], "$distinct_id": "big", "$set": {"s": "x" * 1_000_001}}
    body = json.dumps([good(project["token"]), big]).encode()
    headers = dict(JSON_CT)
    if encoding == "gzip":
        body, headers["content-encoding"] = gzip.compress(body), "gzip"
    response = client.post("/engage", params={"verbose": "2"}, content=body, headers=headers)
    assert response.status_code == 400, response.text
    [failed] = response.json()["failed_records"]
    message = "the record is over 1000000 bytes"
    assert failed == {"index": 1, "$distinct_id": "big", "field": "", "message": message}
    assert stored(db, project) == {"good": {"ok": True}}


def too_big_body(token: str) -> bytes:
    """A well-formed JSON array of 11 records of about 1 MB each (every record itself is small enough)."""
    records = [{"$token": token, "$distinct_id": f"u{i}", "$set": {"s": "x" * 990_000}} for i in range(11)]
    return json.dumps([good(token), *records]).encode()


@pytest.mark.parametrize("framing", ["content-length", "chunked", "gzip"])
def test_body_over_10_mb(framing: str, client: httpx.Client, project: Row, db: DB) -> None:
    body = too_big_body(project["token"])
    assert len(body) > 10_000_000
    headers = dict(JSON_CT)
    content: bytes | Iterator[bytes] = body
    if framing == "chunked":
        content = (body[i : i + 65536] for i in range(0, len(body), 65536))
    elif framing == "gzip":
        content, headers["content-encoding"] = gzip.compress(body), "gzip"
    response = client.post("/engage", params={"verbose": "1"}, content=content, headers=headers)
    assert response.status_code == 413
    answer = response.json()
    assert answer["code"] == 413 and answer["status"] and answer["error"]
    assert stored(db, project) == {}


def test_gzip_bomb_stops_at_the_limit(client: httpx.Client, project: Row) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    zeros = b"0" * 1_000_000
    bomb = b"".join(compressor.compress(zeros) for _ in range(100)) + compressor.flush()
    assert len(bomb) < 200_000
    started = time.monotonic()
    response = client.post("/engage", content=bomb, headers=GZIP_JSON)
    assert time.monotonic() - started < 5
    assert response.status_code == 413
    assert response.json()["code"] == 413


def test_2001_records(client: httpx.Client, project: Row, db: DB) -> None:
    batch = [{"$token": project["token"], "$distinct_id": f"u{i}", "$set": {"i": i}} for i in range(2001)]
    response = client.post("/engage", params={"verbose": "2"}, json=batch)
    assert response.status_code == 400
    body = response.json()
    assert body["num_records_imported"] == 2000
    [failed] = body["failed_records"]
    assert (failed["index"], failed["$distinct_id"], failed["field"]) == (2000, "u2000", "")
    assert "2000" in failed["message"]
    profiles = stored(db, project)
    assert len(profiles) == 2000 and "u2000" not in profiles
    assert profiles["u1999"] == {"i": 1999}


def test_values_at_the_limits_are_stored(client: httpx.Client, project: Row, db: DB) -> None:
    props = {"n" * 255: 1, "deep": [[[1]]], "obj": {"a": {"b": {"c": 1}}}, "list": ["x" * 1000] * 250}
    ids_and_sets = [("u1", props), ("d" * 255, {"a": 1}), (42, {"a": 1}), (1.0, {"b": 2})]
    batch = [{"$token": project["token"], "$distinct_id": d, "$set": s} for d, s in ids_and_sets]
    response = client.post("/engage", params={"verbose": "2"}, json=batch)
    assert response.status_code == 200, response.text
    assert stored(db, project) == {"u1": props, "d" * 255: {"a": 1}, "42": {"a": 1}, "1": {"b": 2}}


UNSUPPORTED = {
    "xml": {"content-type": "application/xml"},
    "png": {"content-type": "image/png"},
    "multipart": {"content-type": "multipart/form-data; boundary=x"},
    "brotli": {"content-type": "application/json", "content-encoding": "br"},
}


@pytest.mark.parametrize("headers", UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_unsupported_content_type(
    headers: dict[str, str], client: httpx.Client, project: Row, db: DB
) -> None:
    content = json.dumps([good(project["token"])])
    response = client.post("/engage", params={"verbose": "1"}, content=content, headers=headers)
    assert response.status_code == 415
    body = response.json()
    assert body["code"] == 415 and body["status"] == "Unsupported Media Type" and body["error"]
    assert stored(db, project) == {}


# --- conflicts with stored state ----------------------------------------------------------------------------


def warnings_of(client: httpx.Client, secret: str) -> list[Row]:
    response = client.get("/api/ingestion-warnings", auth=(secret, ""))
    assert response.status_code == 200, response.text
    results: list[Row] = response.json()["results"]
    return results


def test_conflicts_become_warnings(client: httpx.Client, project: Row, other: Row, db: DB) -> None:
    token = project["token"]
    client.post("/engage", json={"$token": token, "$distinct_id": "u1", "$set": {"name": "Ada", "l": [1]}})
    conflicts = [
        {"$add": {"name": 1, "n": 2}},
        {"$append": {"name": "x", "l": 2}},
        {"$union": {"name": ["y"], "l": [3]}},
        {"$remove": {"name": "Ada", "l": 1}},
        {"$set": {"$last_seen": "2020-01-01T00:00:00", "ok": 1}},
    ]
    for operation in conflicts:
        update = {"$token": token, "$distinct_id": "u1", **operation}
        response = client.post("/engage", params={"verbose": "2"}, json=[update, good(token)])
        assert response.status_code == 200, response.text
        assert response.json() == {"code": 200, "status": "OK", "num_records_imported": 2}
    assert stored(db, project) == {"u1": {"name": "Ada", "l": [2, 3], "n": 2, "ok": 1}, "good": {"ok": True}}

    found = warnings_of(client, project["api_secret"])
    assert [(w["distinct_id"], w["operation"], w["property"]) for w in found] == [
        ("u1", "$add", "name"),
        ("u1", "$append", "name"),
        ("u1", "$union", "name"),
        ("u1", "$remove", "name"),
        ("u1", "$set", "$last_seen"),
    ]
    assert all(w["reason"] and w["time"] for w in found)
    assert "number" in found[0]["reason"] and "list" in found[1]["reason"]

    assert client.get("/api/ingestion-warnings").status_code == 401
    assert client.get("/api/ingestion-warnings", auth=("wrong-secret", "")).status_code == 401
    assert warnings_of(client, other["api_secret"]) == []
    client.post("/engage", json={"$token": other["token"], "$distinct_id": "u1", "$set": {"s": "x"}})
    client.post("/engage", json={"$token": other["token"], "$distinct_id": "u1", "$add": {"s": 1}})
    assert [w["property"] for w in warnings_of(client, other["api_secret"])] == ["s"]
    assert len(warnings_of(client, project["api_secret"])) == 5


def test_conflicts_of_one_record_are_reported_once(client: httpx.Client, project: Row) -> None:
    token = project["token"]
    client.post("/engage", json={"$token": token, "$distinct_id": "u1", "$set": {"name": "Ada"}})
    update = {"$token": token, "$distinct_id": "u1", "$add": {"name": 1}, "$append": {"name": "x"}}
    assert client.post("/engage", json=update).text == "1"
    found = warnings_of(client, project["api_secret"])
    assert [(w["operation"], w["reason"]) for w in found] == [
        ("$add", "the stored value is a string, not a number"),
        ("$append", "the stored value is a string, not a list"),
    ]


@pytest.mark.parametrize(
    ("number", "path"),
    [
        ("18446744073709551616", "$set.big"),
        ("0.12345678901234567890123", "$set.big"),
        ("1e400", "$set.big"),
        ("1e-400", "$set.big"),
    ],
)
def test_numbers_a_double_cannot_hold_are_refused_not_altered(
    client: httpx.Client, project: Row, db: psycopg.Connection[Row], number: str, path: str
) -> None:
    token = project["token"]
    body = (
        f'[{{"$token": "{token}", "$distinct_id": "big", "$set": {{"big": {number}}}}},'
        f' {{"$token": "{token}", "$distinct_id": "ok", "$set": {{"id": "12345678901234567890", "n": 0.5}}}}]'
    )
    response = client.post(
        "/engage", params={"verbose": "2"}, content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    [failure] = response.json()["failed_records"]
    assert (failure["index"], failure["field"]) == (0, path)
    assert number in failure["message"]
    stored = {
        r["distinct_id"]: r["properties"]
        for r in db.execute(
            "SELECT distinct_id, properties FROM profiles WHERE project_id = %s", (project["id"],)
        ).fetchall()
    }
    assert stored == {"ok": {"id": "12345678901234567890", "n": 0.5}}
