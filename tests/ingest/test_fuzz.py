"""A hypothesis fuzzer of the wire decoder and the validators, over real HTTP (issue 10): batches that mix
good records with hostile ones (deep nesting, huge and tiny numbers, invalid UTF-8, lone surrogates, NUL in
names and values, very long names and ids, wrong types), and bodies that are not records at all (random
bytes, truncated JSON, base64 and gzip).

Whatever is sent: never a 500 and never a hang (every request has a deadline), every answer in the shapes of
docs/ingest.md section 2, no Postgres or Python text in a message, nothing stored from a rejected record, and
every good record beside it stored.  The plain tests take about 20 s; `slow` runs the same properties on
many more examples (about 3 minutes).
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import LiveServer, new_project

Row = dict[str, Any]
FAST = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
LONG = settings(FAST, max_examples=1500)
# Words that would betray internals: a driver, an exception class, a traceback.
LEAKS = re.compile(r"psycopg|SQLSTATE|Traceback|Error\b|Exception|out of range: overflow|unsupported Unicode")


@dataclass(frozen=True)
class Raw:
    """JSON text put into a body as it is: numbers no Python float writes, nesting past the recursion limit,
    bytes that are not UTF-8."""

    text: bytes


def encode(value: Any) -> bytes:
    """JSON with escapes for everything not ASCII (so lone surrogates and NUL travel as `\\uXXXX`), and Raw
    fragments as they are."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return b"{" + b",".join(encode(str(k)) + b":" + encode(v) for k, v in value.items()) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(encode(v) for v in value) + b"]"
    return json.dumps(value).encode()


# --- values -------------------------------------------------------------------------------------------------

SAFE_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
safe_text = st.text(SAFE_CHARS, max_size=12)
names = st.text(SAFE_CHARS, min_size=1, max_size=12)
safe_scalars = st.one_of(
    safe_text, st.integers(-(2**53), 2**53), st.booleans(), st.none(), st.sampled_from([0.5, -2.25, 1e300])
)
safe_values = st.one_of(
    safe_scalars, st.lists(safe_scalars, max_size=3), st.dictionaries(names, safe_scalars, max_size=2)
)

HOSTILE_CHARS = ["\x00", "\ud800", "\udfff", "\udc80", "\u2028", "\ufeff", "\x7f", "\n"]
hostile_text = st.builds(
    lambda a, h, b: a + h + b, safe_text, st.sampled_from(HOSTILE_CHARS), safe_text
) | st.text(min_size=256, max_size=2000)
RAW_NUMBERS = [
    "1e400",
    "-1e400",
    "1e-400",
    "-1E-999",
    "4.9e-324",
    "2.2250738585072014e-308",
    "1.7976931348623157e308",
    "123456789012345678901234567890",
    "18446744073709551616",
    "-9223372036854775809",
    "9223372036854775807",
    "0.12345678901234567890123",
    "1e308",
    "-0.0",
    "12345678901234567",
    "1" * 400,
    "0." + "0" * 400 + "1",
]
raw_numbers = st.sampled_from(RAW_NUMBERS).map(lambda t: Raw(t.encode()))
deep = st.integers(2, 1500).map(lambda n: Raw(b"[" * n + b"1" + b"]" * n))
deep_objects = st.integers(2, 600).map(lambda n: Raw(b'{"a":' * n + b"1" + b"}" * n))
deep_number = st.integers(100, 1000).map(
    lambda n: Raw(b"[" * n + b"123456789012345678901234567890" + b"]" * n)
)
not_utf8 = st.sampled_from([b'"\xff\xfe"', b'"\xc3"', b'"\xed\xa0\x80"', b'"a\x80b"']).map(Raw)
hostile_values = st.one_of(
    hostile_text, raw_numbers, deep, deep_objects, deep_number, not_utf8, st.text(min_size=300, max_size=300)
)


# --- records ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    path: str
    id_field: str  # what failed_records name the id by
    good: Callable[[str, str], Row]  # (token, id) -> a valid record
    table: str
    column: str
    auth: bool = False


def _profile(token: str, id_: str) -> Row:
    return {"$token": token, "$distinct_id": id_, "$set": {"k": "v"}}


def _group(token: str, id_: str) -> Row:
    return {"$token": token, "$group_key": "company", "$group_id": id_, "$set": {"k": "v"}}


def _event(token: str, id_: str) -> Row:
    props = {
        "token": token,
        "distinct_id": id_,
        "time": int(time.time()) - 60,
        "$insert_id": uuid.uuid4().hex,
    }
    return {"event": "Fuzzed", "properties": props}


ENDPOINTS = {
    "engage": Endpoint("/engage", "$distinct_id", _profile, "profiles", "distinct_id"),
    "groups": Endpoint("/groups", "$group_id", _group, "group_profiles", "group_id"),
    "track": Endpoint("/track", "$distinct_id", _event, "events", "distinct_id"),
    "import": Endpoint("/import", "$insert_id", _event, "events", "distinct_id", auth=True),
}

# Where a hostile value goes in a record (a path of keys; "*" a fresh key named by the hostile text).
PROFILE_SPOTS = [
    ("$set", "k"),
    ("$set", "*"),
    ("$token",),
    ("$distinct_id",),
    ("$time",),
    ("$ip",),
    ("$set_once", "o"),
    ("$add", "n"),
    ("$union", "l"),
    ("$append", "l"),
    ("$unset",),
    ("$group_key",),
    ("$group_id",),
    ("*",),
]
EVENT_SPOTS = [
    ("properties", "x"),
    ("properties", "*"),
    ("properties", "token"),
    ("properties", "distinct_id"),
    ("properties", "time"),
    ("properties", "$insert_id"),
    ("event",),
    ("*",),
    ("properties",),
]


ID_FIELDS = ("$distinct_id", "$group_id", "distinct_id")


def mutate(record: Row, spot: tuple[str, ...], value: Any, key: str) -> bool:
    """Puts `value` at `spot` in the record.  A string id keeps its record's prefix, so that a stored copy is
    recognised; False when the id was replaced by something else (a copy stored under it is not found)."""
    target = record
    for part in spot[:-1]:
        target = target.setdefault(part, {}) if isinstance(target.get(part, {}), dict) else target
    last = spot[-1]
    if last in ID_FIELDS and last in target:
        if not isinstance(value, str):
            target[last] = value
            return False
        value = str(target[last]) + "~" + value
    if last == "*":
        target[key] = value
    else:
        target[last] = value
    return True


@st.composite
def batches(
    draw: st.DrawFn, endpoint: Endpoint, token: str, prefix: str
) -> tuple[list[Any], set[int], set[int]]:
    """A batch of good and hostile records, the indexes of the good ones, and of those whose id was replaced.
    Every other id starts with `prefix-i` (i the record's index): what is stored says which record it was."""
    size = draw(st.integers(1, 8))
    records: list[Any] = []
    good: set[int] = set()
    untracked: set[int] = set()
    spots = EVENT_SPOTS if endpoint.table == "events" else PROFILE_SPOTS
    for i in range(size):
        record = endpoint.good(token, f"{prefix}-{i}")
        if draw(st.booleans()):
            good.add(i)
            if endpoint.table != "events" and draw(st.booleans()):
                record["$set"]["k"] = draw(safe_values)
            records.append(record)
            continue
        for _ in range(draw(st.integers(1, 2))):
            key = draw(st.one_of(hostile_text, names))
            if not mutate(record, draw(st.sampled_from(spots)), draw(hostile_values | safe_values), key):
                untracked.add(i)
        records.append(record)
    return records, good, untracked


# --- the server, a project, the checks ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz(server: LiveServer, database_url: str) -> Any:
    project = new_project(database_url)
    with httpx.Client(base_url=server.url, timeout=httpx.Timeout(20.0)) as http:
        yield http, project


def stored(db: psycopg.Connection[Row], endpoint: Endpoint, project: Row, prefix: str) -> set[int]:
    """Indexes of the records of this example that were stored."""
    table, column = endpoint.table, endpoint.column
    rows = db.execute(
        f"SELECT {column} AS id FROM {table} WHERE project_id = %s AND {column} LIKE %s",
        (project["id"], prefix + "-%"),
    ).fetchall()
    return {int(re.match(rf"{prefix}-(\d+)", r["id"]).group(1)) for r in rows}  # type: ignore[union-attr]


def strict_answer(response: httpx.Response, total: int | None, id_field: str) -> tuple[int, set[int], bool]:
    """(records imported, indexes failed, whether the body as a whole was unreadable), once the answer is
    found in the documented strict shape (`total`: the records sent, when known)."""
    assert response.status_code in (200, 400), (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if response.status_code == 200:
        assert set(body) == {"code", "status", "num_records_imported"} and body["code"] == 200
        assert body["status"] == "OK" and body["num_records_imported"] == (
            total or body["num_records_imported"]
        )
        return body["num_records_imported"], set(), False
    assert set(body) == {"code", "status", "error", "num_records_imported", "failed_records"}, body
    assert (body["code"], body["status"]) == (400, "Bad Request")
    assert isinstance(body["error"], str) and body["error"] and not LEAKS.search(body["error"])
    failed: set[int] = set()
    for failure in body["failed_records"]:
        assert set(failure) == {"index", id_field, "field", "message"}, failure
        assert isinstance(failure["index"], int) and 0 <= failure["index"] < (total or 2001)
        assert (
            isinstance(failure["field"], str) and isinstance(failure["message"], str) and failure["message"]
        )
        assert not LEAKS.search(failure["message"]), failure
        failed.add(failure["index"])
    unreadable = body["failed_records"] == [] and body["num_records_imported"] == 0
    if not unreadable and total is not None:
        assert body["num_records_imported"] == total - len(failed)
    return body["num_records_imported"], failed, unreadable


def send(http: httpx.Client, endpoint: Endpoint, project: Row, body: bytes, **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", {"content-type": "application/json"})
    params = {"verbose": "2", **kwargs.pop("params", {})}
    auth = (project["api_secret"], "") if endpoint.auth else None
    return http.post(endpoint.path, content=body, headers=headers, params=params, auth=auth, **kwargs)


def check_records(fuzz: Any, db: psycopg.Connection[Row], name: str, data: st.DataObject) -> None:
    http, project = fuzz
    endpoint = ENDPOINTS[name]
    prefix = uuid.uuid4().hex[:12]
    records, good, untracked = data.draw(batches(endpoint, project["token"], prefix))
    body = b"[" + b",".join(encode(r) for r in records) + b"]"
    as_ndjson = data.draw(st.booleans())
    headers = {"content-type": "application/x-ndjson" if as_ndjson else "application/json"}
    if as_ndjson:
        body = b"\n".join(encode(r) for r in records)
    response = send(http, endpoint, project, body, headers=headers)
    imported, failed, unreadable = strict_answer(response, len(records), endpoint.id_field)
    saved = stored(db, endpoint, project, prefix)
    # Only a body that is not JSON at all is refused whole; a batch of hostile records never is.
    assert not unreadable, response.text
    assert not saved & failed, ("stored a rejected record", response.text)
    assert good <= saved, ("a good record was not stored", response.text)
    assert not good & failed
    accepted = set(range(len(records))) - failed
    assert accepted - untracked <= saved <= accepted, response.text
    assert imported == len(accepted)


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
@FAST
@given(data=st.data())
def test_hostile_records(name: str, data: st.DataObject, fuzz: Any, db: psycopg.Connection[Row]) -> None:
    check_records(fuzz, db, name, data)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ENDPOINTS))
@LONG
@given(data=st.data())
def test_hostile_records_long(name: str, data: st.DataObject, fuzz: Any, db: psycopg.Connection[Row]) -> None:
    check_records(fuzz, db, name, data)


# --- bodies that are not records ----------------------------------------------------------------------------

CONTENT_TYPES = [
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/x-ndjson",
    "",
    "application/vnd.api+json",
    "application/json; charset=latin-1",
]


@st.composite
def garbage(draw: st.DrawFn, good_body: bytes) -> tuple[bytes, dict[str, str], str]:
    """(body, headers, how it was made): random bytes, or a good body cut short, base64ed or gzipped."""
    kind = draw(st.sampled_from(["bytes", "cut", "base64 cut", "gzip cut", "gzip bytes", "form cut", "gzip"]))
    cut = draw(st.integers(0, 2**16)) % max(len(good_body), 1)  # bounds that do not depend on the body
    headers = {"content-type": draw(st.sampled_from(CONTENT_TYPES))}
    if kind == "bytes":
        body = draw(st.binary(max_size=600))
    elif kind == "cut":
        body = good_body[:cut]
    elif kind == "base64 cut":
        body = b"data=" + base64.b64encode(good_body)[: cut + 1]
        headers["content-type"] = "application/x-www-form-urlencoded"
    elif kind == "form cut":
        body = b"data=" + good_body[:cut]
        headers["content-type"] = draw(st.sampled_from(["application/x-www-form-urlencoded", "text/plain"]))
    elif kind == "gzip cut":
        packed = gzip.compress(good_body)
        body = packed[: draw(st.integers(0, 2**16)) % len(packed)]
        headers["content-encoding"] = "gzip"
    elif kind == "gzip bytes":
        body = gzip.compress(draw(st.binary(max_size=600)))
        headers["content-encoding"] = "gzip"
    else:
        body = gzip.compress(good_body)
        headers["content-encoding"] = draw(st.sampled_from(["gzip", "x-gzip", "deflate"]))
    return body, headers, kind


def check_garbage(fuzz: Any, db: psycopg.Connection[Row], name: str, data: st.DataObject) -> None:
    http, project = fuzz
    endpoint = ENDPOINTS[name]
    prefix = uuid.uuid4().hex[:12]
    good = [endpoint.good(project["token"], f"{prefix}-{i}") for i in range(data.draw(st.integers(1, 4)))]
    good_body = json.dumps(good).encode()
    body, headers, _ = data.draw(garbage(good_body))
    mode = data.draw(st.sampled_from([{"verbose": "2"}, {"verbose": "1"}, {"verbose": "0"}, {"strict": "1"}]))
    auth = (project["api_secret"], "") if endpoint.auth else None
    if data.draw(st.booleans()):
        response = http.get(endpoint.path, params={**mode, "data": body.decode("latin-1")}, auth=auth)
    else:
        response = http.post(endpoint.path, content=body, headers=headers, params=mode, auth=auth)
    assert response.status_code in (200, 400, 413, 415), (response.status_code, response.text)
    saved = stored(db, endpoint, project, prefix)
    if response.status_code in (413, 415):
        body_ = response.json()
        assert set(body_) == {"code", "status", "error"} and body_["code"] == response.status_code
        assert saved == set()
        return
    if mode.get("verbose") in ("1", "0"):
        if mode["verbose"] == "0":
            assert response.text in ("0", "1")
            assert (response.text == "1") == bool(saved), response.text
        else:
            answer = response.json()
            assert set(answer) == {"status", "error"} and answer["status"] in (0, 1)
            assert answer["error"] is None or not LEAKS.search(answer["error"])
            assert (answer["status"] == 1) == bool(saved), answer
        return
    imported, failed, _ = strict_answer(response, None, endpoint.id_field)
    assert imported == len(saved)
    assert not saved & failed


@pytest.mark.parametrize("name", ["engage", "track", "import"])
@FAST
@given(data=st.data())
def test_bodies_that_are_not_records(
    name: str, data: st.DataObject, fuzz: Any, db: psycopg.Connection[Row]
) -> None:
    check_garbage(fuzz, db, name, data)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["engage", "groups", "track", "import"])
@LONG
@given(data=st.data())
def test_bodies_that_are_not_records_long(
    name: str, data: st.DataObject, fuzz: Any, db: psycopg.Connection[Row]
) -> None:
    check_garbage(fuzz, db, name, data)
