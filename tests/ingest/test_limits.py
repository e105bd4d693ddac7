"""Per-project rate limits and the bound on writes in flight (ingest/limits.py): the buckets' arithmetic,
the 429 and 503 answers over HTTP with nothing applied, and buckets shared by the processes of
`serve --workers 2`.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from profilestore.errors import TooManyRequests
from profilestore.ingest.limits import RateLimiter
from served import Served
from support import LiveServer, make_settings, new_project, profiles_of

Row = dict[str, Any]


def test_buckets_refill_and_refuse_whole(tmp_path: Path) -> None:
    for limiter in (RateLimiter(10, 20), RateLimiter(10, 20, str(tmp_path))):
        limiter.take({1: 20}, now=100.0)  # a full bucket: the burst
        with pytest.raises(TooManyRequests) as refused:
            limiter.take({1: 5, 2: 1}, now=100.0)
        assert refused.value.headers == {"Retry-After": "1"}  # 5 records at 10/s
        limiter.take({2: 20}, now=100.0)  # refused whole: project 2 took nothing above
        limiter.take({1: 5}, now=100.5)  # refilled by 5 in half a second
        with pytest.raises(TooManyRequests) as later:
            limiter.take({1: 20}, now=100.5)
        assert later.value.headers == {"Retry-After": "2"}
        with pytest.raises(TooManyRequests, match="over the burst limit of 20"):
            limiter.take({3: 21}, now=100.0)
        limiter.take({1: 20}, now=1000.0)  # never more than the burst, however long the wait


def test_a_shared_file_is_one_bucket_for_every_process(tmp_path: Path) -> None:
    """Two limiters on one file (as two worker processes map it) draw from the same buckets."""
    a, b = RateLimiter(10, 20, str(tmp_path)), RateLimiter(10, 20, str(tmp_path))
    a.take({7: 15}, now=50.0)
    with pytest.raises(TooManyRequests):
        b.take({7: 10}, now=50.0)
    b.take({7: 5}, now=50.0)
    limiter_off = RateLimiter(0, 0, str(tmp_path))
    limiter_off.take({7: 10**9})


def engage(project: Row, n: int, prefix: str = "u") -> list[Row]:
    return [{"$token": project["token"], "$distinct_id": f"{prefix}{i}", "$set": {"i": i}} for i in range(n)]


def test_over_the_limit_is_a_429_and_applies_nothing(database_url: str, db: Any) -> None:
    project = new_project(database_url)
    settings = make_settings(rate_limit_records=100, rate_limit_burst=150)
    with LiveServer(database_url, settings) as server, httpx.Client(base_url=server.url) as client:
        assert client.post("/engage", json=engage(project, 150)).status_code == 200
        refused = client.post("/engage", json=engage(project, 100, "v"), headers={"Idempotency-Key": "r"})
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        body = refused.json()
        assert body["code"] == 429 and "over its limit of 100 records per second" in body["error"]
        assert len(profiles_of(db, project["id"])) == 150
        kept = "SELECT count(*) AS n FROM idempotency_keys WHERE key = 'r' AND %s = ANY(project_ids)"
        assert db.execute(kept, (project["id"],)).fetchone() == {"n": 0}
        time.sleep(int(refused.headers["retry-after"]))
        again = client.post("/engage", json=engage(project, 100, "v"), headers={"Idempotency-Key": "r"})
        assert again.status_code == 200
        assert len(profiles_of(db, project["id"])) == 250
        # Another project has its own bucket; invalid records cost nothing.
        other = new_project(database_url)
        assert client.post("/engage", json=engage(other, 150)).status_code == 200


def test_past_the_writes_in_flight_a_503_at_once(database_url: str, db: Any) -> None:
    project = new_project(database_url)
    with (
        LiveServer(database_url, make_settings(max_writes_in_flight=1)) as server,
        httpx.Client(base_url=server.url) as client,
        socket.create_connection(("127.0.0.1", server.port)) as slow,
    ):
        body = orjson.dumps(engage(project, 1, "slow"))
        head = (
            "POST /engage HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        slow.sendall(head.encode() + body[:5])  # in flight: its body is still arriving
        time.sleep(0.3)
        began = time.monotonic()
        busy = client.post("/engage", json=engage(project, 1, "fast"))
        assert busy.status_code == 503 and time.monotonic() - began < 1
        assert busy.headers["retry-after"] == "1"
        assert "the server is busy (1 writes in progress)" in busy.json()["error"]
        slow.sendall(body[5:])
        assert b" 200 " in slow.recv(4096)
        assert client.post("/engage", json=engage(project, 1, "fast")).status_code == 200
    assert set(profiles_of(db, project["id"])) == {"slow0", "fast0"}


def test_serve_with_two_workers_shares_the_buckets(database_url: str) -> None:
    project = new_project(database_url)
    env = {
        "PROFILESTORE_WORKERS": "2",
        "PROFILESTORE_RATE_LIMIT_RECORDS": "50",
        "PROFILESTORE_RATE_LIMIT_BURST": "100",
    }
    with Served(database_url, **env) as served:
        began = time.monotonic()
        accepted = 0
        for i in range(30):  # a new connection each: both processes answer some
            response = httpx.post(served.url + "/engage", json=engage(project, 10, f"r{i}-"))
            assert response.status_code in (200, 429)
            accepted += 10 if response.status_code == 200 else 0
        elapsed = time.monotonic() - began
    # One bucket: at most the burst plus what refilled meanwhile (two buckets would allow twice the burst).
    assert 100 <= accepted <= 100 + 50 * elapsed + 10
