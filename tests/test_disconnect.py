"""A client that goes away before its answer stops the work it asked for (issue 10, finding 1): the handler is
cancelled (disconnect.py), psycopg cancels its statement in Postgres, and a write applies nothing.

The statements are made to wait on a lock the test holds, so that they are still running when the client
closes its connection; each test then watches Postgres for the statement.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from typing import Any

import httpx
import psycopg

from profilestore.db.engine import libpq_dsn
from support import LiveServer, profiles_of

Row = dict[str, Any]


def waiting(db: psycopg.Connection[Row], pattern: str) -> int:
    """The server's statements matching `pattern` that are running (waiting on the lock) now."""
    row = db.execute(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'"
        " AND query LIKE %s AND pid <> pg_backend_pid()",
        (pattern,),
    ).fetchone()
    return int(row["n"]) if row else 0


def send_and_leave(server: LiveServer, request: bytes, db: psycopg.Connection[Row], pattern: str) -> float:
    """Sends a request, waits until its statement runs, closes the connection; how long the statement
    went on after that."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + 10
        while not waiting(db, pattern):
            assert time.monotonic() < deadline, "the statement never started"
            time.sleep(0.05)
    left = time.monotonic()
    while waiting(db, pattern) and time.monotonic() < left + 10:
        time.sleep(0.05)
    return time.monotonic() - left


def test_a_write_whose_client_left_is_cancelled_and_applies_nothing(
    server: LiveServer, client: httpx.Client, project: Row, database_url: str, db: psycopg.Connection[Row]
) -> None:
    first = {"$token": project["token"], "$distinct_id": "u1", "$set": {"a": 1}}
    assert client.post("/engage", json=[first]).status_code == 200
    body = json.dumps([{**first, "$set": {"a": 2}}, {**first, "$distinct_id": "u2"}]).encode()
    request = (
        b"POST /engage HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with psycopg.connect(libpq_dsn(database_url)) as holder:
        holder.execute(
            "SELECT FROM profiles WHERE project_id = %s AND distinct_id = 'u1' FOR UPDATE", (project["id"],)
        )
        went_on = send_and_leave(server, request, db, "%profilestore_apply_profiles%")
        holder.rollback()
    assert went_on < 3  # not until the statement timeout (30 s), nor until the lock was released
    time.sleep(0.3)
    assert {d: p["properties"] for d, p in profiles_of(db, project["id"]).items()} == {"u1": {"a": 1}}


def test_a_read_whose_client_left_is_cancelled(
    server: LiveServer, project: Row, database_url: str, db: psycopg.Connection[Row]
) -> None:
    secret = base64.b64encode(f"{project['api_secret']}:".encode()).decode()
    request = f"GET /api/2.0/engage HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {secret}\r\n\r\n".encode()
    with psycopg.connect(libpq_dsn(database_url)) as holder:
        holder.execute("LOCK TABLE profiles IN ACCESS EXCLUSIVE MODE")
        went_on = send_and_leave(server, request, db, "%count(*) AS total FROM%")
        holder.rollback()
    assert went_on < 3
