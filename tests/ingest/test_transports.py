"""Every transport form of docs/ingest.md section 1, end to end over HTTP, each checked against the stored
rows."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import psycopg
import pytest

from support import profiles_of

FORM = {"content-type": "application/x-www-form-urlencoded"}
Row = dict[str, Any]


def b64(obj: Any, *, urlsafe: bool = False, padded: bool = True) -> str:
    raw = json.dumps(obj).encode()
    text = (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode()
    return text if padded else text.rstrip("=")


def records(token: str) -> list[dict[str, Any]]:
    """Two updates whose standard base64 holds `+` and `/` and ends in padding, whatever the token.

    ">>>" and "???" encode to `Pj4+` and `Pz8/` when they start on a 3-byte boundary; the two fillers move
    that boundary and the total length until both hold.
    """
    for before in range(3):
        for after in range(3):
            recs = [
                {
                    "$token": token,
                    "$distinct_id": "u1",
                    "$set": {"f": "x" * before, "a": ">>>???", "g": "y" * after, "phone": "+49 30 1234"},
                },
                {"$token": token, "$distinct_id": "u2", "$add": {"n": 2}},
            ]
            text = b64(recs)
            if "+" in text and "/" in text and text.endswith("="):
                return recs
    raise AssertionError("no filler gives a base64 with + and / and padding")


def expected(recs: list[dict[str, Any]]) -> dict[str, Row]:
    return {"u1": recs[0]["$set"], "u2": {"n": 2}}


def stored(db: psycopg.Connection[Row], project: Row) -> dict[str, Row]:
    return {d: p["properties"] for d, p in profiles_of(db, project["id"]).items()}


def gz(data: bytes) -> bytes:
    return gzip.compress(data)


# Each form: records -> keyword arguments of httpx.Client.request (method and url included).
Form = Callable[[list[dict[str, Any]]], dict[str, Any]]
FORMS: dict[str, Form] = {
    "GET base64": lambda r: {"method": "GET", "url": "/engage", "params": {"data": b64(r)}},
    "GET url-safe unpadded base64": lambda r: {
        "method": "GET",
        "url": "/engage",
        "params": {"data": b64(r, urlsafe=True, padded=False)},
    },
    "GET raw JSON": lambda r: {"method": "GET", "url": "/engage", "params": {"data": json.dumps(r)}},
    "POST form raw JSON": lambda r: {"method": "POST", "url": "/engage", "data": {"data": json.dumps(r)}},
    "POST form base64": lambda r: {"method": "POST", "url": "/engage", "data": {"data": b64(r)}},
    "POST form url-safe base64": lambda r: {
        "method": "POST",
        "url": "/engage",
        "data": {"data": b64(r, urlsafe=True, padded=False)},
    },
    "POST form base64 not URL-encoded (Node)": lambda r: {
        "method": "POST",
        "url": "/engage",
        "content": f"data={b64(r)}".encode(),
        "headers": FORM,
    },
    "sendBeacon text/plain base64": lambda r: {
        "method": "POST",
        "url": "/engage",
        "content": f"data={quote(b64(r), safe='')}".encode(),
        "headers": {"content-type": "text/plain;charset=UTF-8"},
    },
    "sendBeacon text/plain raw JSON": lambda r: {
        "method": "POST",
        "url": "/engage",
        "content": urlencode({"data": json.dumps(r)}).encode(),
        "headers": {"content-type": "text/plain;charset=UTF-8"},
    },
    "POST JSON array": lambda r: {"method": "POST", "url": "/engage", "json": r},
    "POST JSON with charset": lambda r: {
        "method": "POST",
        "url": "/engage",
        "content": json.dumps(r).encode(),
        "headers": {"content-type": "application/json; charset=utf-8"},
    },
    "POST gzip JSON": lambda r: {
        "method": "POST",
        "url": "/engage",
        "content": gz(json.dumps(r).encode()),
        "headers": {"content-type": "application/json", "content-encoding": "gzip"},
    },
    "POST gzip form raw JSON": lambda r: {
        "method": "POST",
        "url": "/engage",
        "content": gz(urlencode({"data": json.dumps(r)}).encode()),
        "headers": {**FORM, "content-encoding": "gzip"},
    },
    "POST gzip form base64": lambda r: {
        "method": "POST",
        "url": "/engage",
        "content": gz(f"data={b64(r)}".encode()),
        "headers": {**FORM, "content-encoding": "gzip"},
    },
    "GET trailing slash": lambda r: {"method": "GET", "url": "/engage/", "params": {"data": b64(r)}},
    "POST form trailing slash": lambda r: {"method": "POST", "url": "/engage/", "data": {"data": b64(r)}},
    "POST JSON trailing slash": lambda r: {"method": "POST", "url": "/engage/", "json": r},
}


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_form_stores_the_records(
    form: Form, client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    recs = records(project["token"])
    response = client.request(**form(recs))
    assert response.status_code == 200, response.text
    assert response.text == "1"
    assert stored(db, project) == expected(recs)


def test_json_single_object(client: httpx.Client, project: Row, db: psycopg.Connection[Row]) -> None:
    record = {"$token": project["token"], "$distinct_id": "solo", "$set": {"plan": "pro"}}
    response = client.post("/engage", json=record)
    assert (response.status_code, response.text) == (200, "1")
    assert stored(db, project) == {"solo": {"plan": "pro"}}


def test_form_single_object_base64(client: httpx.Client, project: Row, db: psycopg.Connection[Row]) -> None:
    record = {"$token": project["token"], "$distinct_id": "solo", "$set": {"plan": "pro"}}
    response = client.post("/engage", data={"data": b64(record)})
    assert (response.status_code, response.text) == (200, "1")
    assert stored(db, project) == {"solo": {"plan": "pro"}}


# --- response modes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "body"),
    [
        ({}, 1),
        ({"verbose": "0"}, 1),
        ({"verbose": "1"}, {"status": 1, "error": None}),
        ({"verbose": "2"}, {"code": 200, "status": "OK", "num_records_imported": 2}),
        ({"strict": "1"}, {"code": 200, "status": "OK", "num_records_imported": 2}),
    ],
    ids=["default", "verbose=0", "verbose=1", "verbose=2", "strict=1"],
)
def test_response_modes(
    params: dict[str, str], body: Any, client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    recs = records(project["token"])
    response = client.post("/engage", params=params, data={"data": b64(recs)})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == body
    assert stored(db, project) == expected(recs)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_img_answers_a_gif(
    method: str, client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    recs = records(project["token"])
    response = client.request(method, "/engage", params={"data": b64(recs), "img": "1"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content.startswith(b"GIF8")
    assert stored(db, project) == expected(recs)


@pytest.mark.parametrize(
    ("verbose", "inner"), [("0", "1"), ("1", '{"status":1,"error":null}')], ids=["verbose=0", "verbose=1"]
)
def test_callback_answers_jsonp(
    verbose: str, inner: str, client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    recs = records(project["token"])
    response = client.get("/engage", params={"data": b64(recs), "callback": "cb", "verbose": verbose})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.text.replace(" ", "") == f"cb({inner})"
    assert stored(db, project) == expected(recs)


def test_ignored_parameters(client: httpx.Client, project: Row, db: psycopg.Connection[Row]) -> None:
    recs = records(project["token"])
    params = {"data": b64(recs), "test": "1", "_": "1732300000000", "api_key": "k", "other": "x", "ip": "1"}
    response = client.get("/engage", params=params)
    assert (response.status_code, response.text) == (200, "1")
    assert stored(db, project) == expected(recs)


# --- parameters in the form body ----------------------------------------------------------------------------


def test_form_fields_beside_data(client: httpx.Client, project: Row, db: psycopg.Connection[Row]) -> None:
    """The Python SDK posts data, verbose and ip together in the body."""
    recs = records(project["token"])
    response = client.post("/engage", data={"data": json.dumps(recs), "verbose": "1", "ip": "0"})
    assert response.status_code == 200
    assert response.json() == {"status": 1, "error": None}
    assert stored(db, project) == expected(recs)


@pytest.mark.parametrize("data_first", [True, False], ids=["data first", "data last"])
def test_query_string_wins_over_form_fields(
    data_first: bool, client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    recs = records(project["token"])
    fields = [("data", b64(recs)), ("verbose", "1"), ("ip", "1")]
    if not data_first:
        fields.reverse()
    query = {"verbose": "2", "ip": "0"}
    response = client.post("/engage", params=query, content=urlencode(fields), headers=FORM)
    assert response.status_code == 200
    assert response.json() == {"code": 200, "status": "OK", "num_records_imported": 2}
    assert stored(db, project) == expected(recs)


def test_form_body_callback_field(client: httpx.Client, project: Row, db: psycopg.Connection[Row]) -> None:
    recs = records(project["token"])
    response = client.post("/engage", data={"data": b64(recs), "callback": "mixpanel._jsc[123]"})
    assert response.status_code == 200
    assert response.text == "mixpanel._jsc[123](1)"
    assert stored(db, project) == expected(recs)


# --- CORS ---------------------------------------------------------------------------------------------------

ORIGIN = "https://app.example.com"


@pytest.mark.parametrize("path", ["/engage", "/engage/"])
def test_cors_preflight(path: str, client: httpx.Client) -> None:
    response = client.options(
        path,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "content-type" in response.headers["access-control-allow-headers"].lower()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_cors_on_the_request(
    method: str, client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    recs = records(project["token"])
    if method == "GET":
        response = client.get("/engage", params={"data": b64(recs)}, headers={"Origin": ORIGIN})
    else:
        response = client.post("/engage", data={"data": b64(recs)}, headers={"Origin": ORIGIN})
    assert (response.status_code, response.text) == (200, "1")
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert stored(db, project) == expected(recs)


def test_cors_on_an_error_response(client: httpx.Client) -> None:
    """The browser can only read a 415 (and so report it) when the CORS headers are on it too."""
    headers = {"Origin": ORIGIN, "content-type": "application/xml"}
    response = client.post("/engage", content=b"<x/>", headers=headers)
    assert response.status_code == 415
    assert response.headers["access-control-allow-origin"] == ORIGIN


def test_plain_options_is_answered(client: httpx.Client) -> None:
    response = client.options("/engage", headers={"Origin": "https://app.example"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"


def test_time_as_numeric_text(client: httpx.Client, project: dict[str, Any], db: Any) -> None:
    record = {"$token": project["token"], "$distinct_id": "t1", "$time": "1000010", "$set": {"a": 1}}
    assert client.post("/engage", json=[record]).text == "1"
    row = db.execute(
        "SELECT extract(epoch FROM last_seen)::float8 AS t FROM profiles WHERE project_id = %s",
        (project["id"],),
    ).fetchone()
    assert row["t"] == 1000010


def test_get_with_a_url_over_64_kib(server: Any, project: dict[str, Any], db: Any) -> None:
    """The Node SDK sends single calls as GET ?data=: a 200 KB record makes a URL far over 64 KiB.
    (http.client, because httpx itself refuses such URLs.)"""
    record = {"$token": project["token"], "$distinct_id": "long-url", "$set": {"blob": "x" * 200_000}}
    data = base64.b64encode(json.dumps(record).encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/engage?" + urlencode({"data": data, "verbose": "1"}))
    response = conn.getresponse()
    assert (response.status, json.loads(response.read())) == (200, {"status": 1, "error": None})
    conn.close()
    row = db.execute("SELECT properties FROM profiles WHERE project_id = %s", (project["id"],)).fetchone()
    assert len(row["properties"]["blob"]) == 200_000
