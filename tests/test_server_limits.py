"""Slow, greedy and idle clients over raw sockets: the limits the server protocol (profilestore/server.py)
keeps before the app sees a request, with no credentials needed.

The first tests run against an in-process server with short timeouts; the last ones against `profilestore
serve` in a child process, whose descriptors and memory are its own: a flood of half-sent requests under a low
descriptor limit, and clients sending huge headers. They print the figures they measure.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import LiveServer, free_port, make_settings

TIMEOUT = 1.5  # header and body timeouts of the in-process server
KEEP_ALIVE = 1.0
SEND_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def limited(database_url: str) -> Iterator[LiveServer]:
    settings = make_settings(
        header_timeout_seconds=TIMEOUT,
        body_timeout_seconds=TIMEOUT,
        keep_alive_seconds=KEEP_ALIVE,
        send_timeout_seconds=SEND_TIMEOUT,
    )
    with LiveServer(database_url, settings) as live:
        yield live


def connect(port: int, timeout: float = 10.0, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (a reset ends it too); a timeout fails the test."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


def send_all(sock: socket.socket, data: bytes) -> int:
    """Send `data`; returns how much went out before the server closed the connection."""
    sent = 0
    try:
        while sent < len(data):
            sent += sock.send(data[sent : sent + 65536])
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


HEAD = b"GET /healthz HTTP/1.1\r\nHost: test\r\n"


def test_header_fields_over_64_kib_are_431_and_the_connection_closes(limited: LiveServer) -> None:
    with connect(limited.port) as sock:
        sock.sendall(HEAD + b"X-Fill: " + b"a" * 60_000 + b"\r\n\r\n")  # under the limit: served
        answer = sock.recv(65536)
        assert status_of(answer) == 200
    for too_big in (
        HEAD + b"X-Fill: " + b"a" * 70_000 + b"\r\n\r\n",  # one field
        HEAD + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000) for i in range(70)) + b"\r\n",  # many
    ):
        with connect(limited.port) as sock:
            send_all(sock, too_big)
            answer = read_all(sock)  # the server closes after the answer
            assert status_of(answer) == 431, answer[:200]
            assert answer.endswith(b"request header fields too large")


def test_a_header_that_never_ends_is_cut_off_at_the_limit(limited: LiveServer) -> None:
    with connect(limited.port) as sock:
        sent = send_all(sock, HEAD + b"X-Fill: " + b"a" * 20_000_000)
        answer = read_all(sock)
    print(f"\nan endless header: {sent:,} bytes sent before the server closed")
    assert status_of(answer) == 431
    assert sent < 20_000_000


def test_a_header_trickled_slower_than_the_timeout_is_408(limited: LiveServer) -> None:
    with connect(limited.port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        sent = send_all(sock, b"X")
        while sent and time.monotonic() - started < TIMEOUT + 5:  # a byte every 0.1 s, never finishing
            time.sleep(0.1)
            sent = send_all(sock, b"a")
        answer = read_all(sock)
        elapsed = time.monotonic() - started
    assert status_of(answer) == 408
    assert TIMEOUT - 0.1 < elapsed < TIMEOUT + 1.5, elapsed


def test_a_connection_that_sends_nothing_is_closed(limited: LiveServer) -> None:
    with connect(limited.port) as sock:
        started = time.monotonic()
        assert read_all(sock) == b""  # closed without an answer: it asked nothing
        elapsed = time.monotonic() - started
    assert TIMEOUT - 0.1 < elapsed < TIMEOUT + 1.5, elapsed


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(limited: LiveServer) -> None:
    with connect(limited.port) as sock:
        sock.sendall(HEAD + b"\r\n")
        assert status_of(sock.recv(65536)) == 200
        started = time.monotonic()
        assert read_all(sock) == b""
        elapsed = time.monotonic() - started
    assert KEEP_ALIVE - 0.1 < elapsed < KEEP_ALIVE + 1.0, elapsed


def engage_body(token: str, size: int) -> bytes:
    record = {"$token": token, "$distinct_id": "slow-body", "$set": {"pad": ""}}
    pad = size - len(json.dumps([record]))
    record["$set"] = {"pad": "p" * pad}
    body = json.dumps([record]).encode()
    assert len(body) == size
    return body


def post_head(length: int) -> bytes:
    return (
        b"POST /engage HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


def test_a_body_trickled_too_slowly_is_cut_off(limited: LiveServer, project: dict[str, Any]) -> None:
    body = engage_body(project["token"], 100_000)
    with connect(limited.port) as sock:
        sock.sendall(post_head(len(body)))
        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < TIMEOUT + 5:  # 100 bytes every 0.1 s: 1 KB/s
            n = send_all(sock, body[sent : sent + 100])
            if n < 100:
                break
            sent += n
            time.sleep(0.1)
        answer = read_all(sock)
        elapsed = time.monotonic() - started
    assert status_of(answer) == 408
    assert TIMEOUT - 0.1 < elapsed < TIMEOUT + 1.5, elapsed


def test_a_body_arriving_at_a_decent_rate_may_take_longer(
    limited: LiveServer, project: dict[str, Any]
) -> None:
    """A body's time grows with what arrived: 96 KB at about 32 KB/s takes twice the timeout and is stored."""
    body = engage_body(project["token"], 96_000)
    with connect(limited.port) as sock:
        sock.sendall(post_head(len(body)))
        started = time.monotonic()
        for i in range(0, len(body), 3200):
            sock.sendall(body[i : i + 3200])
            time.sleep(0.1)
        answer = sock.recv(65536)
        elapsed = time.monotonic() - started
    assert elapsed > 2 * TIMEOUT
    assert status_of(answer) == 200 and answer.endswith(b"\r\n\r\n1"), answer


def test_a_long_url_arriving_at_a_decent_rate_may_take_longer(limited: LiveServer) -> None:
    """A 256 KB URL (the Node SDK's GET ?data=) at about 100 KB/s takes longer than the header timeout."""
    url = b"/healthz?data=" + b"a" * 256_000
    with connect(limited.port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET ")
        for i in range(0, len(url), 10_000):
            sock.sendall(url[i : i + 10_000])
            time.sleep(0.1)
        sock.sendall(b" HTTP/1.1\r\nHost: test\r\n\r\n")
        answer = sock.recv(65536)
        elapsed = time.monotonic() - started
    assert elapsed > TIMEOUT
    assert status_of(answer) == 200, answer


def test_a_client_that_stops_reading_is_dropped(limited: LiveServer, project: dict[str, Any]) -> None:
    """A profile export of about 10 MB that the client stops reading: once writing has stalled for the send
    timeout, the server drops the connection (and the database connection behind it) instead of waiting."""
    with httpx.Client(base_url=limited.url, timeout=30) as client:
        for batch in range(2):
            records = [
                {"$token": project["token"], "$distinct_id": f"r{batch}-{i}", "$set": {"pad": "p" * 10_000}}
                for i in range(500)
            ]
            assert client.post("/engage", json=records).text == "1"
        secret = base64.b64encode(f"{project['api_secret']}:".encode()).decode()
        auth = f"Authorization: Basic {secret}\r\n".encode()
        whole = len(
            client.get(
                "/api/profiles/export?format=jsonl", headers={"Authorization": f"Basic {secret}"}
            ).content
        )
    with connect(limited.port, rcvbuf=4096) as sock:
        sock.sendall(b"GET /api/profiles/export?format=jsonl HTTP/1.1\r\nHost: test\r\n" + auth + b"\r\n")
        time.sleep(SEND_TIMEOUT + 2)
        received = read_all(sock)
    print(
        f"\na client that stopped reading: {len(received):,} bytes of a {whole:,} byte export, then dropped"
    )
    assert whole > 10_000_000
    assert status_of(received) == 200 and len(received) < whole


def test_past_the_cap_the_connection_waiting_longest_makes_room(database_url: str) -> None:
    """With room for two connections: the one idle longest is closed silently, then a half-sent request is
    answered 503, each to let a newcomer's request through (long timeouts: they close nothing here)."""
    settings = make_settings(max_connections=2, keep_alive_seconds=60.0, header_timeout_seconds=60.0)
    with LiveServer(database_url, settings) as live, contextlib.ExitStack() as stack:
        idle = stack.enter_context(connect(live.port, timeout=2.0))
        idle.sendall(HEAD + b"\r\n")
        assert status_of(idle.recv(65536)) == 200
        half_sent = stack.enter_context(connect(live.port, timeout=2.0))
        half_sent.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(0.2)
        newcomer = stack.enter_context(connect(live.port, timeout=2.0))
        newcomer.sendall(HEAD + b"\r\n")
        assert status_of(newcomer.recv(65536)) == 200
        assert read_all(idle) == b""
        another = stack.enter_context(connect(live.port, timeout=2.0))
        another.sendall(HEAD + b"\r\n")
        assert status_of(another.recv(65536)) == 200
        answer = read_all(half_sent)
        assert status_of(answer) == 503 and answer.endswith(b"too many connections")


# The service as a user runs it, in a child process, for its own descriptors and memory.


class Served:
    """`profilestore serve` in a child process, with extra environment and a lowered descriptor limit."""

    def __init__(self, database_url: str, nofile: int | None = None, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by __exit__)

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "profilestore", "serve", "--port", str(self.port)],
            env={**os.environ, "DATABASE_URL": database_url, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit,
            start_new_session=True,
        )

    def __enter__(self) -> Served:
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.output()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.log.close()

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")


def healthz_latencies(port: int, count: int) -> list[float]:
    """How long each of `count` new connections took to have /healthz answered 200 (at most 1 s)."""
    latencies = []
    for _ in range(count):
        started = time.monotonic()
        with connect(port, timeout=1.0) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            answer = read_all(sock)
        latencies.append(time.monotonic() - started)
        assert status_of(answer) == 200
        time.sleep(0.05)
    return latencies


def describe(latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    return f"p50 {statistics.median(ms):.1f} ms, max {ms[-1]:.1f} ms over {len(ms)}"


def half_sent(port: int) -> socket.socket:
    """A connection that sends the start of a request and then nothing."""
    sock = socket.socket()
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        sock.connect(("127.0.0.1", port))
    time.sleep(0.002)
    with contextlib.suppress(OSError):
        sock.send(b"POST /engage HTTP/1.1\r\nHost: test\r\nContent-")
    return sock


@pytest.mark.slow
def test_healthz_answers_under_a_flood_of_half_sent_requests(
    database_url: str, project: dict[str, Any]
) -> None:
    """300 half-sent requests against a server limited to 256 descriptors (the probe's figures), then 300 more
    while /healthz is asked: the oldest are closed to make room, and /healthz answers within 1 s."""
    flood: list[socket.socket] = []
    with Served(database_url, nofile=256) as served:
        calm = healthz_latencies(served.port, 10)

        def attack() -> None:
            for _ in range(300):
                flood.append(half_sent(served.port))

        try:
            attack()
            attacker = threading.Thread(target=attack)
            attacker.start()
            flooded = healthz_latencies(served.port, 20)
            attacker.join()
            time.sleep(0.2)
            closed = sum(1 for sock in flood if sock_closed(sock))
        finally:
            for sock in flood:
                sock.close()
    print(f"\n/healthz calm: {describe(calm)}; under 600 half-sent requests, nofile 256: {describe(flooded)}")
    print(f"half-sent connections the server closed to make room: {closed} of {len(flood)}")
    assert max(flooded) < 1.0
    assert closed > len(flood) - 256


def sock_closed(sock: socket.socket) -> bool:
    """The server answered (a 503) or closed: it has let go of this connection."""
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    except OSError:
        pass
    return True


@pytest.mark.slow
def test_memory_stays_bounded_while_clients_send_huge_headers(database_url: str) -> None:
    """Four clients each sending a header of up to 200 MB (the probe took the server to 1.05 GB): each is
    answered 431 after about the limit, the server's RSS barely moves and /healthz keeps answering."""
    with Served(database_url) as served:
        healthz_latencies(served.port, 5)
        before = served.rss_bytes()
        peak = before
        sent_each = []
        for _ in range(4):
            with connect(served.port) as sock:
                sock.sendall(HEAD + b"X-Fill: ")
                sent = 0
                chunk = b"a" * 1_000_000
                try:
                    while sent < 200_000_000:
                        sock.sendall(chunk)
                        sent += len(chunk)
                        peak = max(peak, served.rss_bytes())
                        assert peak - before < 64_000_000, f"RSS grew by {peak - before:,} bytes"
                except (BrokenPipeError, ConnectionResetError):
                    pass
                answer = read_all(sock)
            sent_each.append(sent)
            assert status_of(answer) == 431
        latencies = healthz_latencies(served.port, 10)
        after = served.rss_bytes()
    print(
        f"\nhuge headers: RSS before {before / 1e6:.1f} MB, peak {peak / 1e6:.1f} MB,"
        f" after {after / 1e6:.1f} MB; bytes sent before the 431: {sent_each};"
        f" /healthz after: {describe(latencies)}"
    )
    assert peak - before < 16_000_000
    assert max(sent_each) < 10_000_000
