"""Mixpanel-shaped answers of the ingestion endpoints (docs/ingest.md section 2)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.responses import Response

from profilestore.errors import (
    DatabaseUnavailable,
    PayloadTooLarge,
    ProfilestoreError,
    Unauthorized,
    UnsupportedMediaType,
)
from profilestore.ingest.responses import (
    PIXEL_GIF,
    Outcome,
    RecordError,
    ingest_error_response,
    ingest_response,
)

ALL_OK = Outcome(total=5, failures=[])
SOME_BAD = Outcome(
    total=5,
    failures=[
        RecordError(1, "$distinct_id", None, "$distinct_id", "must not be empty"),
        RecordError(3, "$distinct_id", "u7", "$add.score", "must be a number"),
    ],
)
NONE_OK = Outcome(
    total=2, failures=[RecordError(i, "$distinct_id", f"u{i}", "$token", "unknown") for i in (0, 1)]
)
UNREADABLE = Outcome(total=0, failures=[], body_error="data is not valid base64 or JSON")


def body(response: Response) -> Any:
    return json.loads(bytes(response.body))


def header(response: Response, name: str) -> str | None:
    return response.headers.get(name)


# --- verbose=0 ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [(ALL_OK, b"1"), (SOME_BAD, b"1"), (NONE_OK, b"0"), (UNREADABLE, b"0"), (Outcome(0, []), b"0")],
    ids=["all-ok", "some-bad", "none-ok", "unreadable", "empty"],
)
def test_verbose_0(outcome: Outcome, expected: bytes) -> None:
    for params in ({}, {"verbose": "0"}, {"verbose": "junk"}):
        response = ingest_response(params, outcome)
        assert (response.status_code, response.body) == (200, expected)


# --- verbose=1 ----------------------------------------------------------------------------------------------


def test_verbose_1_all_valid() -> None:
    response = ingest_response({"verbose": "1"}, ALL_OK)
    assert response.status_code == 200
    assert header(response, "content-type") == "application/json"
    assert body(response) == {"status": 1, "error": None}


def test_verbose_1_some_invalid() -> None:
    response = ingest_response({"verbose": "1"}, SOME_BAD)
    assert response.status_code == 200
    assert body(response) == {
        "status": 1,
        "error": "2 of 5 records failed: [1] $distinct_id: must not be empty; "
        "[3] $add.score: must be a number",
    }


def test_verbose_1_none_valid() -> None:
    response = ingest_response({"verbose": "1"}, NONE_OK)
    assert body(response) == {
        "status": 0,
        "error": "2 of 2 records failed: [0] $token: unknown; [1] $token: unknown",
    }


def test_verbose_1_unreadable() -> None:
    response = ingest_response({"verbose": "1"}, UNREADABLE)
    assert (response.status_code, body(response)) == (200, {"status": 0, "error": UNREADABLE.body_error})


def test_verbose_1_empty_request() -> None:
    assert body(ingest_response({"verbose": "1"}, Outcome(0, []))) == {
        "status": 0,
        "error": "no records in the request",
    }


def test_verbose_1_lists_at_most_ten_failures() -> None:
    failures = [RecordError(i, "$distinct_id", f"u{i}", "$set", "must be an object") for i in range(25)]
    error = body(ingest_response({"verbose": "1"}, Outcome(30, failures)))["error"]
    assert error.startswith("25 of 30 records failed: [0] $set: must be an object; [1] $set")
    assert error.count("must be an object") == 10
    assert error.endswith("[9] $set: must be an object; ...")


def test_verbose_1_whole_record_error_and_repeated_index() -> None:
    failures = [
        RecordError(2, "$distinct_id", None, "", "must be a JSON object"),
        RecordError(4, "$distinct_id", "u4", "$set.a", "too deep"),
        RecordError(4, "$distinct_id", "u4", "$set.b", "too long"),
    ]
    error = body(ingest_response({"verbose": "1"}, Outcome(5, failures)))["error"]
    assert (
        error
        == "2 of 5 records failed: [2] must be a JSON object; [4] $set.a: too deep; [4] $set.b: too long"
    )


# --- verbose=2 / strict -------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [{"verbose": "2"}, {"strict": "1"}, {"strict": "1", "verbose": "1"}])
def test_strict_all_valid(params: dict[str, str]) -> None:
    response = ingest_response(params, ALL_OK)
    assert response.status_code == 200
    assert body(response) == {"code": 200, "status": "OK", "num_records_imported": 5}


def test_strict_some_invalid() -> None:
    response = ingest_response({"strict": "1"}, SOME_BAD)
    assert response.status_code == 400
    assert body(response) == {
        "code": 400,
        "status": "Bad Request",
        "error": "some data points in the request failed validation",
        "num_records_imported": 3,
        "failed_records": [
            {"index": 1, "$distinct_id": None, "field": "$distinct_id", "message": "must not be empty"},
            {"index": 3, "$distinct_id": "u7", "field": "$add.score", "message": "must be a number"},
        ],
    }


def test_strict_none_valid_uses_insert_id_on_import() -> None:
    outcome = Outcome(1, [RecordError(0, "$insert_id", "abc-1", "properties.time", "is required")])
    response = ingest_response({}, outcome, strict_default=True)
    assert response.status_code == 400
    assert body(response)["num_records_imported"] == 0
    assert body(response)["failed_records"] == [
        {"index": 0, "$insert_id": "abc-1", "field": "properties.time", "message": "is required"}
    ]


def test_strict_unreadable() -> None:
    response = ingest_response({"verbose": "2"}, UNREADABLE)
    assert response.status_code == 400
    assert body(response) == {
        "code": 400,
        "status": "Bad Request",
        "error": "data is not valid base64 or JSON",
        "num_records_imported": 0,
        "failed_records": [],
    }


def test_strict_default_can_be_turned_off() -> None:
    assert ingest_response({}, SOME_BAD, strict_default=True).status_code == 400
    relaxed = ingest_response({"strict": "0"}, SOME_BAD, strict_default=True)
    assert (relaxed.status_code, relaxed.body) == (200, b"1")
    assert (
        body(ingest_response({"strict": "0", "verbose": "1"}, SOME_BAD, strict_default=True))["status"] == 1
    )
    # verbose=2 asks for the strict shape whatever strict says
    assert ingest_response({"strict": "0", "verbose": "2"}, SOME_BAD).status_code == 400


# --- img and callback ---------------------------------------------------------------------------------------


def test_pixel_gif_is_a_1x1_gif() -> None:
    assert PIXEL_GIF.startswith(b"GIF89a\x01\x00\x01\x00")
    assert PIXEL_GIF.endswith(b";")


@pytest.mark.parametrize(
    ("params", "outcome", "status"),
    [
        ({"img": "1"}, ALL_OK, 200),
        ({"img": "1", "strict": "1"}, SOME_BAD, 400),
        ({"img": "1"}, UNREADABLE, 200),
    ],
)
def test_img(params: dict[str, str], outcome: Outcome, status: int) -> None:
    response = ingest_response(params, outcome)
    assert response.status_code == status
    assert response.body == PIXEL_GIF
    assert header(response, "content-type") == "image/gif"


def test_img_0_is_ignored() -> None:
    assert ingest_response({"img": "0"}, ALL_OK).body == b"1"


@pytest.mark.parametrize(
    "name", ["cb", "jQuery1234_567", "$.handlers.done", "mixpanel._jsc[12345678]", "a.b[1][2]"]
)
def test_callback(name: str) -> None:
    response = ingest_response({"callback": name}, ALL_OK)
    assert response.status_code == 200
    assert header(response, "content-type") == "text/javascript; charset=utf-8"
    assert response.body == f"{name}(1)".encode()


def test_callback_with_verbose_and_strict_failure_is_200() -> None:
    response = ingest_response({"callback": "cb", "verbose": "1"}, NONE_OK)
    assert response.status_code == 200
    text = bytes(response.body).decode()
    assert text.startswith("cb({") and text.endswith("})")
    assert json.loads(text[3:-1])["status"] == 0
    strict = ingest_response({"callback": "cb", "strict": "1"}, SOME_BAD)
    assert strict.status_code == 200
    assert json.loads(bytes(strict.body)[3:-1])["code"] == 400


@pytest.mark.parametrize(
    "name",
    ["", "alert(1)", "a;b", "1abc", "a..b", "a.", "x[y]", "a b", "<script>", "a" * 300, "cb\n", "é"],
)
def test_unsafe_callback_is_ignored(name: str) -> None:
    response = ingest_response({"callback": name, "verbose": "1"}, ALL_OK)
    assert header(response, "content-type") == "application/json"
    assert body(response) == {"status": 1, "error": None}


# --- request-level errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status", "phrase", "headers"),
    [
        (Unauthorized(), 401, "Unauthorized", {"www-authenticate": None}),  # no browser prompt (issue 10)
        (PayloadTooLarge("body is over the limit"), 413, "Request Entity Too Large", {}),
        (UnsupportedMediaType("unsupported content type"), 415, "Unsupported Media Type", {}),
        (DatabaseUnavailable(retry_after=7), 503, "Service Unavailable", {"retry-after": "7"}),
    ],
)
def test_error_response(
    exc: ProfilestoreError, status: int, phrase: str, headers: dict[str, str | None]
) -> None:
    response = ingest_error_response({"verbose": "0"}, exc)
    assert response.status_code == status
    assert body(response) == {"code": status, "status": phrase, "error": exc.message}
    for name, value in headers.items():
        assert header(response, name) == value


def test_rate_limit_error_response() -> None:
    class RateLimited(ProfilestoreError):
        status_code = 429

    response = ingest_error_response({}, RateLimited("too many requests", headers={"Retry-After": "3"}))
    assert response.status_code == 429
    assert body(response) == {"code": 429, "status": "Too Many Requests", "error": "too many requests"}
    assert header(response, "retry-after") == "3"


def test_error_response_honours_img_and_callback() -> None:
    gif = ingest_error_response({"img": "1"}, DatabaseUnavailable())
    assert (gif.status_code, gif.body, header(gif, "retry-after")) == (503, PIXEL_GIF, "5")
    script = ingest_error_response({"callback": "cb"}, PayloadTooLarge("too big"))
    assert script.status_code == 200
    assert script.body == b'cb({"code":413,"status":"Request Entity Too Large","error":"too big"})'
