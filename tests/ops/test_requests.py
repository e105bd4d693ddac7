"""Every answer carries a request id (`X-Request-ID`, an incoming one kept) and makes one JSON log line that
names the route, never the query string, a secret, a token or a value (ops/requests.py)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from profilestore.ops.requests import JsonLines

Row = dict[str, Any]


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[Row] = []
        self.setFormatter(JsonLines())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[list[Row]]:
    handler = Lines()
    logger = logging.getLogger("profilestore.requests")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


def test_every_answer_has_an_id(client: httpx.Client, project: Row) -> None:
    made = client.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert client.get("/healthz").headers["x-request-id"] != made
    kept = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a:42"}).headers["x-request-id"]
    assert kept == "lb-7f3a:42"
    for unsafe in (b"", b"x" * 129, b"a b", "a\u00e9".encode(), b'x"}{'):
        got = client.get("/healthz", headers={"X-Request-ID": unsafe}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", got)
    assert "x-request-id" in client.get("/no/such/path").headers
    assert "x-request-id" in client.get("/api/profiles/export").headers  # 401 before any body
    engage = client.post("/engage", json=[{"$token": project["token"], "$distinct_id": "u", "$set": {}}])
    assert "x-request-id" in engage.headers


def test_one_json_line_per_request_without_secrets_or_values(
    client: httpx.Client, project: Row, lines: list[Row]
) -> None:
    secret, token = project["api_secret"], project["token"]
    client.post(
        "/engage",
        params={"verbose": "1", "data": "not-used"},
        json=[{"$token": token, "$distinct_id": "person-1", "$set": {"email": "secret-value@example.com"}}],
        headers={"X-Request-ID": "trace-1"},
    )
    client.post(
        "/api/2.0/engage", data={"where": 'properties["email"] == "x"'}, auth=(secret, "")
    ).raise_for_status()
    client.get(f"/api/cohorts/{123456}", auth=(secret, ""))
    mine = [line for line in lines if line["message"] == "request"]
    assert len(mine) == 3
    first, read, cohort = mine
    assert first["request_id"] == "trace-1"
    assert (first["method"], first["route"], first["status"]) == ("POST", "/engage", 200)
    assert first["duration_ms"] > 0 and first["bytes_sent"] > 0
    assert first["level"] == "info" and first["time"].endswith("+00:00")
    assert (read["route"], cohort["route"], cohort["status"]) == (
        "/api/2.0/engage",
        "/api/cohorts/{cohort_id}",
        404,
    )
    text = orjson.dumps(lines).decode()
    for never in (secret, token, "person-1", "secret-value", "email", "where", "123456"):
        assert never not in text
