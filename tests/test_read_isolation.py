"""Reads keep answering under write load (issue 10, finding 11): the read and admin API (`/api/...`) and its
authentication take their connections from a pool of their own, so 64 clients writing back to back, which
keep every ingestion connection busy and a queue waiting for them, do not make an authenticated read wait
for one.  The server runs in a process of its own and the writers in another (tests/load_writers.py)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from profilestore.db.engine import libpq_dsn
from served import Served
from support import LiveServer, make_settings

WRITERS = 64
LOAD_SECONDS = 14.0
WARM_UP_SECONDS = 3.0
READS = 30
READ_BOUND_SECONDS = 1.5  # generous: unloaded, a read takes a few milliseconds; starved, seconds


def _auth(secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{secret}:".encode()).decode()}


def test_a_read_does_not_wait_for_the_writers_connections(database_url: str, project: dict[str, Any]) -> None:
    """Ingestion's only connection held by a write waiting on a row lock: a read still answers at once
    (sharing one pool, it waited for that connection until the pool timeout, then answered 503)."""
    settings = make_settings(pool_min_size=1, pool_max_size=1, api_pool_size=1, db_timeout_seconds=2.0)
    token, auth = project["token"], _auth(project["api_secret"])
    record = {"$token": token, "$distinct_id": "locked", "$set": {"n": 1}}
    with (
        LiveServer(database_url, settings) as live,
        httpx.Client(base_url=live.url, timeout=30) as client,
        psycopg.connect(libpq_dsn(database_url)) as locker,
    ):
        assert client.post("/engage", json=[record]).text == "1"
        locker.execute(
            "SELECT 1 FROM profiles WHERE project_id = %s AND distinct_id = 'locked' FOR UPDATE",
            (project["id"],),
        )
        answers: list[str] = []
        writer = threading.Thread(target=lambda: answers.append(client.post("/engage", json=[record]).text))
        writer.start()
        deadline = time.monotonic() + 10
        while not _waiting_on_a_lock(database_url):
            assert time.monotonic() < deadline, "the write never waited on the lock"
            time.sleep(0.05)
        started = time.monotonic()
        response = client.get("/api/2.0/engage", params={"distinct_id": "locked"}, headers=auth)
        elapsed = time.monotonic() - started
        locker.rollback()
        writer.join(30)
    assert response.status_code == 200 and response.json()["results"][0]["$properties"]["n"] == 1
    assert elapsed < 1.0
    assert answers == ["1"]


def _waiting_on_a_lock(database_url: str) -> bool:
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.slow
def test_reads_answer_promptly_under_write_load(database_url: str, project: dict[str, Any]) -> None:
    with Served(database_url) as served, httpx.Client(base_url=served.url, timeout=30) as client:
        record = {"$token": project["token"], "$distinct_id": "reader", "$set": {"plan": "pro"}}
        assert client.post("/engage", json=[record]).text == "1"
        auth = _auth(project["api_secret"])
        read = {"distinct_id": "reader"}

        def timed_read() -> tuple[float, int]:
            started = time.monotonic()
            response = client.get("/api/2.0/engage", params=read, headers=auth)
            return time.monotonic() - started, response.status_code

        idle = sorted(timed_read()[0] for _ in range(10))
        load = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("load_writers.py")),
                served.url,
                project["token"],
                str(LOAD_SECONDS),
                str(WRITERS),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(WARM_UP_SECONDS)
            loaded: list[tuple[float, int]] = []
            for _ in range(READS):
                loaded.append(timed_read())
                time.sleep(0.2)
            stdout, _ = load.communicate(timeout=120)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
        writes = json.loads(stdout)

    latencies = sorted(t for t, _ in loaded)
    statuses = sorted({s for _, s in loaded})
    figures = {
        "idle_read_p50_ms": round(idle[len(idle) // 2] * 1000, 1),
        "loaded_read_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "loaded_read_p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
        "loaded_read_max_ms": round(latencies[-1] * 1000, 1),
        "read_statuses": statuses,
        "writes": writes,
    }
    print(f"\nread latency under {WRITERS} writers: {json.dumps(figures)}")
    # The load was real: the writers kept writing throughout, and waited for connections doing so.
    assert writes["200"]["count"] >= WRITERS * 3, figures
    assert statuses == [200], figures
    assert latencies[-1] < READ_BOUND_SECONDS, figures
