"""The read and admin API checks credentials before it reads a body, and caps every body (issue 10, finding 3;
security.ApiGuard), over raw sockets: a stranger declaring 200 MB is answered 401 at once, unread; an
authenticated body over `max_api_body_bytes` is a 413, declared or chunked; one under it works as before."""

from __future__ import annotations

import base64
import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from served import Served
from support import LiveServer, make_settings

BIG = 200_000_000
CAP = 4096


def basic(secret: str) -> str:
    return "Basic " + base64.b64encode(f"{secret}:".encode()).decode()


def head(path: str, *, length: int | None = None, auth: str | None = None, chunked: bool = False) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case names), body (by Content-Length)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "closed inside the body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture(scope="module")
def capped(database_url: str) -> Iterator[LiveServer]:
    with LiveServer(database_url, make_settings(max_api_body_bytes=CAP)) as live:
        yield live


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/api/cohorts", {"error", "detail"}),
        ("/api/events/query", {"error", "detail"}),
        ("/api/2.0/engage", {"error"}),
        ("/api/2.0/export", {"error"}),
    ],
)
def test_a_stranger_declaring_200_mb_is_answered_at_once_unread(
    server: LiveServer, path: str, shape: set[str]
) -> None:
    """Headers and a few bytes of a 200 MB body: the 401 comes without waiting for the rest."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        started = time.monotonic()
        sock.sendall(head(path, length=BIG) + b'{"name": ')
        status, headers, body = read_response(sock, timeout=5)
        elapsed = time.monotonic() - started
        assert status == 401 and set(json.loads(body)) == shape
        assert headers["connection"] == "close" and closed_by_server(sock)
    assert elapsed < 2.0


def test_a_wrong_secret_or_project_is_answered_unread(server: LiveServer, project: dict[str, Any]) -> None:
    for path, auth, status in [
        ("/api/cohorts", basic("not-a-secret"), 401),
        (f"/api/cohorts?project_id={project['id'] + 10_000}", basic(project["api_secret"]), 403),
        ("/api/cohorts?project_id=x", basic(project["api_secret"]), 400),
    ]:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(head(path, length=BIG, auth=auth))
            assert read_response(sock, timeout=5)[0] == status
            assert closed_by_server(sock)
    # Without a body, nothing is left unread: the connection stays.
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        for _ in range(2):
            sock.sendall(b"GET /api/cohorts HTTP/1.1\r\nHost: test\r\n\r\n")
            status, headers, _ = read_response(sock)
            assert status == 401 and headers.get("connection") != "close"


def test_a_declared_body_over_the_cap_is_413_unread(capped: LiveServer, project: dict[str, Any]) -> None:
    with socket.create_connection(("127.0.0.1", capped.port)) as sock:
        sock.sendall(head("/api/cohorts", length=CAP + 1, auth=basic(project["api_secret"])))
        status, headers, body = read_response(sock, timeout=5)
        assert status == 413 and json.loads(body)["error"] == "PayloadTooLarge"
        assert str(CAP) in json.loads(body)["detail"]
        assert headers["connection"] == "close" and closed_by_server(sock)


def test_a_chunked_body_is_read_up_to_the_cap(capped: LiveServer, project: dict[str, Any]) -> None:
    """No Content-Length to refuse up front: a chunked body is read up to the cap, then refused; bodies
    under the cap, declared or chunked, reach the route whole."""
    with socket.create_connection(("127.0.0.1", capped.port)) as sock:
        sock.sendall(head("/api/2.0/engage", chunked=True, auth=basic(project["api_secret"])))
        piece = b"x" * 1000
        for _ in range(CAP // len(piece) + 1):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        status, headers, body = read_response(sock, timeout=5)
        assert status == 413 and set(json.loads(body)) == {"error"}
        assert headers["connection"] == "close"
    auth = basic(project["api_secret"])
    cohort = json.dumps({"name": "guarded", "distinct_ids": ["a", "b"]}).encode()
    with socket.create_connection(("127.0.0.1", capped.port)) as sock:
        sock.sendall(head("/api/cohorts", length=len(cohort), auth=auth) + cohort)
        status, _, body = read_response(sock)
        assert status == 201 and json.loads(body)["name"] == "guarded"
        second = json.dumps({"name": "chunked", "distinct_ids": ["c"]}).encode()
        chunks = [b"%x\r\n%s\r\n" % (len(c), c) for c in (second[:10], second[10:])]
        sock.sendall(head("/api/cohorts", chunked=True, auth=auth) + b"".join(chunks) + b"0\r\n\r\n")
        status, headers, body = read_response(sock)
        assert status == 201 and json.loads(body)["name"] == "chunked"
        assert headers.get("connection") != "close"
        sock.sendall(f"GET /api/cohorts HTTP/1.1\r\nHost: t\r\nAuthorization: {auth}\r\n\r\n".encode())
        status, _, body = read_response(sock)
        assert status == 200 and {c["name"] for c in json.loads(body)} == {"guarded", "chunked"}


@pytest.mark.slow
def test_a_stranger_streaming_200_mb_costs_the_server_no_memory(database_url: str) -> None:
    """The probe's attack: 200 MB sent as fast as the socket takes it to POST /api/cohorts without
    credentials.  The server answers 401 at once and stops reading; its RSS does not grow by the body."""
    piece = b" " * 1_000_000
    with Served(database_url) as served:
        before = peak = served.rss_bytes()
        sent = 0
        with socket.create_connection(("127.0.0.1", served.port)) as sock:
            sock.sendall(head("/api/cohorts", length=BIG))
            sock.setblocking(False)
            started = time.monotonic()
            answer = b""
            while sent < BIG and time.monotonic() - started < 60:
                peak = max(peak, served.rss_bytes())
                readable, writable, _ = select.select([sock], [sock], [], 1.0)
                if readable:
                    try:
                        answer = sock.recv(65536)
                    except ConnectionResetError:
                        answer = b"<reset>"
                    break
                if writable:
                    with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):
                        sent += sock.send(piece)
            elapsed = time.monotonic() - started
        peak = max(peak, served.rss_bytes())
    print(
        f"\n200 MB unauthenticated POST /api/cohorts: answered after {elapsed:.2f} s, {sent / 1e6:.1f} MB"
        f" sent; server RSS {before / 1e6:.1f} MB, peak {peak / 1e6:.1f} MB"
    )
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert peak - before < 20_000_000
    assert sent < BIG / 4
