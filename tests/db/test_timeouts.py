"""The service's Postgres connections have a statement timeout and an idle-in-transaction timeout (issue 10,
finding 1), and the long work -- streamed exports, pagination-session builds -- runs under longer ones of its
own (db/engine.py long_running).

A statement stopped at its time limit is a 503 with Retry-After and nothing applied (ingestion) or a 503 JSON
error (reads), never a 500 and never Postgres's text.  Statements are made to run long here by holding a lock
they need, so the tests are exact and quick.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from profilestore.db.engine import libpq_dsn
from support import LiveServer, make_settings, new_project, profiles_of

Row = dict[str, Any]
LIMIT = 1.0  # seconds: the tight server's statement and idle-in-transaction timeouts


@pytest.fixture(scope="module")
def tight(database_url: str) -> Iterator[LiveServer]:
    settings = make_settings(
        statement_timeout_seconds=LIMIT,
        idle_in_transaction_timeout_seconds=LIMIT,
        long_statement_timeout_seconds=30.0,
        export_idle_timeout_seconds=30.0,
    )
    with LiveServer(database_url, settings) as live:
        yield live


def pools(live: LiveServer) -> list[AsyncConnectionPool]:
    """The app's connection pools (main, read API, replica)."""
    state = live.server.config.app.state._state
    found = [p for p in state.values() if isinstance(p, AsyncConnectionPool)]
    assert found
    return found


def pooled_connection(pool: AsyncConnectionPool) -> psycopg.Connection[Any]:
    """A connection made as the pool makes its own (same server, same options)."""
    return psycopg.connect(str(pool.conninfo), autocommit=True, **pool.kwargs)


def locker(database_url: str) -> psycopg.Connection[Any]:
    """A connection of the test's own, in a transaction, to hold locks with."""
    return psycopg.connect(libpq_dsn(database_url))


def test_service_connections_have_both_timeouts(server: LiveServer, tight: LiveServer) -> None:
    for live, expected in ((server, ("30s", "1min")), (tight, ("1s", "1s"))):
        for pool in pools(live):
            with pooled_connection(pool) as conn:
                statement = conn.execute("SHOW statement_timeout").fetchone()
                idle = conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()
                assert (statement, idle) == (
                    {"statement_timeout": expected[0]},
                    {"idle_in_transaction_session_timeout": expected[1]},
                )


def test_a_long_statement_is_cut_off(tight: LiveServer) -> None:
    with pooled_connection(pools(tight)[0]) as conn:
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(5)")
        assert time.monotonic() - started < 3


def test_an_idle_transaction_is_closed(tight: LiveServer) -> None:
    with pooled_connection(pools(tight)[0]) as conn:
        conn.execute("BEGIN")
        conn.execute("SELECT 1")
        time.sleep(LIMIT + 0.8)
        with pytest.raises((psycopg.errors.IdleInTransactionSessionTimeout, psycopg.OperationalError)):
            conn.execute("SELECT 1")


def test_ingestion_past_the_time_limit_is_a_503_and_applies_nothing(
    tight: LiveServer, database_url: str, db: psycopg.Connection[Row]
) -> None:
    project = new_project(database_url)
    batch = [
        {"$token": project["token"], "$distinct_id": "u1", "$set": {"a": 2}},
        {"$token": project["token"], "$distinct_id": "u2", "$set": {"b": 1}},
    ]
    with httpx.Client(base_url=tight.url, timeout=20) as client:
        first = {"$token": project["token"], "$distinct_id": "u1", "$set": {"a": 1}}
        assert client.post("/engage", json=[first]).status_code == 200
        with locker(database_url) as holder:
            holder.execute(
                "SELECT FROM profiles WHERE project_id = %s AND distinct_id = 'u1' FOR UPDATE",
                (project["id"],),
            )
            started = time.monotonic()
            response = client.post("/engage", params={"verbose": "2"}, json=batch)
            elapsed = time.monotonic() - started
            holder.rollback()
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        body = response.json()
        assert (
            body["code"] == 503 and "time limit" in body["error"] and "nothing was applied" in body["error"]
        )
        assert "cancel" not in response.text.lower() and "QueryCanceled" not in response.text
        assert LIMIT * 0.9 < elapsed < 10
        stored = profiles_of(db, project["id"])
        assert {d: p["properties"] for d, p in stored.items()} == {"u1": {"a": 1}}  # nothing applied
        # A retry is safe, and applies it all.
        assert client.post("/engage", params={"verbose": "2"}, json=batch).status_code == 200
    stored = profiles_of(db, project["id"])
    assert {d: p["properties"] for d, p in stored.items()} == {"u1": {"a": 2}, "u2": {"b": 1}}


@pytest.mark.parametrize(
    ("path", "table"), [("/api/2.0/engage", "profiles"), ("/api/ingestion-warnings", "ingestion_warnings")]
)
def test_a_read_past_the_time_limit_is_a_503_json_error(
    path: str, table: str, tight: LiveServer, database_url: str
) -> None:
    project = new_project(database_url)
    with httpx.Client(base_url=tight.url, timeout=20) as client, locker(database_url) as holder:
        holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        response = client.get(path, auth=(project["api_secret"], ""))
        elapsed = time.monotonic() - started
        holder.rollback()
    assert response.status_code == 503, response.text
    assert "retry-after" in response.headers
    body = response.json()
    message = body["error"] if path.startswith("/api/2.0/") else body["detail"]
    assert "time limit" in message and "nothing was applied" in message
    assert "cancel" not in response.text.lower() and "QueryCanceled" not in response.text
    assert elapsed < 10


def test_an_export_outlasts_the_idle_timeout_while_its_client_is_slow(
    tight: LiveServer, database_url: str, db: psycopg.Connection[Row]
) -> None:
    """20 MB of JSONL, far more than the sockets hold: while the client pauses, the export's transaction
    waits idle for longer than the idle-in-transaction timeout of ordinary transactions, and lives on."""
    project = new_project(database_url)
    count = 20_000
    db.execute(
        "INSERT INTO profiles (project_id, distinct_id, properties)"
        " SELECT %s, 'u' || lpad(i::text, 6, '0'), jsonb_build_object('blob', repeat(md5(i::text), 30))"
        " FROM generate_series(1, %s) AS i",
        (project["id"], count),
    )
    idle_for = 0.0
    lines = 0
    headers = {"accept-encoding": "identity"}
    auth = (project["api_secret"], "")
    with httpx.Client(base_url=tight.url, timeout=30) as client:
        url = "/api/profiles/export?format=jsonl"
        with client.stream("GET", url, auth=auth, headers=headers) as response:
            assert response.status_code == 200
            chunks = response.iter_bytes()
            lines += next(chunks).count(b"\n")
            deadline = time.monotonic() + 3 * LIMIT + 1
            while time.monotonic() < deadline:  # the client pauses; the export waits for it
                row = db.execute(
                    "SELECT max(extract(epoch FROM now() - state_change)) AS idle FROM pg_stat_activity"
                    " WHERE datname = current_database() AND state = 'idle in transaction'"
                    " AND query LIKE 'FETCH%%profilestore_export%%'"
                ).fetchone()
                idle_for = max(idle_for, float((row or {}).get("idle") or 0))
                time.sleep(0.2)
            for chunk in chunks:
                lines += chunk.count(b"\n")
    assert idle_for > 2 * LIMIT  # longer than an ordinary transaction may stay idle
    assert lines == count


def test_a_session_build_outlasts_the_statement_timeout(tight: LiveServer, database_url: str) -> None:
    """The pages of a pagination session are stored by a build that here waits 2.5 s for a lock (more than
    the statement timeout); a request for page 1 meanwhile waits for the build, then gets its page."""
    project = new_project(database_url)
    records = [{"$token": project["token"], "$distinct_id": f"u{i:02}", "$set": {"i": i}} for i in range(25)]
    auth = (project["api_secret"], "")
    with httpx.Client(base_url=tight.url, timeout=30) as client:
        assert client.post("/engage", json=records).status_code == 200
        holder = locker(database_url)
        holder.execute("LOCK TABLE query_session_pages IN SHARE MODE")  # the build's INSERT waits for it
        release = threading.Timer(2.5, holder.rollback)
        release.start()
        try:
            first = client.get("/api/2.0/engage", params={"page_size": 10}, auth=auth)
            assert first.status_code == 200, first.text
            session = first.json()["session_id"]
            started = time.monotonic()
            second = client.get(
                "/api/2.0/engage", params={"page_size": 10, "page": 1, "session_id": session}, auth=auth
            )
            waited = time.monotonic() - started
        finally:
            release.join()
            holder.close()
    assert second.status_code == 200, second.text
    assert [r["$distinct_id"] for r in second.json()["results"]] == [f"u{i:02}" for i in range(10, 20)]
    assert waited > LIMIT  # it waited for the build, past the ordinary statement timeout
