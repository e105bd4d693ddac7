"""Helpers of the CSV import API's tests: credentials, starting a job and following it to its end, the
warnings as CSV, and raw sockets for what httpx hides (answers given before a body was sent whole)."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import socket
import time
from typing import Any

import httpx

from profilestore.imports.service import Processes
from support import LiveServer

IMPORT = "/api/profiles/import"
PREVIEW = "/api/profiles/import/preview"
ENDED = ("done", "failed", "interrupted")


def secret_of(project: dict[str, Any]) -> httpx.BasicAuth:
    return httpx.BasicAuth(project["api_secret"], "")


def basic(secret: str) -> str:
    return "Basic " + base64.b64encode(f"{secret}:".encode()).decode()


def csv_bytes(rows: list[list[str]], delimiter: str = ",") -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def start(client: httpx.Client, project: dict[str, Any], body: bytes, **params: Any) -> httpx.Response:
    """POST the file; `params` are the query's options (a list repeats one: map=[...])."""
    return client.post(IMPORT, params=params, content=body, auth=secret_of(project))


def job(client: httpx.Client, project: dict[str, Any], job_id: int) -> dict[str, Any]:
    r = client.get(f"{IMPORT}/{job_id}", auth=secret_of(project))
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def wait(
    client: httpx.Client,
    project: dict[str, Any],
    job_id: int,
    until: Any = lambda j: j["state"] in ENDED,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """The job once `until(job)` holds (by default: it ended), polled every 50 ms."""
    deadline = time.monotonic() + timeout
    while True:
        answer = job(client, project, job_id)
        if until(answer):
            return answer
        assert time.monotonic() < deadline, f"job {job_id} still {answer['state']}: {answer}"
        time.sleep(0.05)


def run(client: httpx.Client, project: dict[str, Any], body: bytes, **params: Any) -> dict[str, Any]:
    """An import started and followed to `done`."""
    r = start(client, project, body, **params)
    assert r.status_code == 202, r.text
    started = r.json()
    url = f"{IMPORT}/{started['id']}"
    assert started == {
        "id": started["id"],
        "state": "queued",
        "status_url": url,
        "warnings_url": f"{url}/warnings.csv",
    }
    ended = wait(client, project, started["id"])
    assert ended["state"] == "done", ended
    return ended


def warnings_csv(client: httpx.Client, project: dict[str, Any], job_id: int) -> list[list[str]]:
    r = client.get(f"{IMPORT}/{job_id}/warnings.csv", auth=secret_of(project))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == f'attachment; filename="import-{job_id}-warnings.csv"'
    return list(csv.reader(io.StringIO(r.text)))


def processes(live: LiveServer) -> Processes:
    """The job processes the server started and has not reaped yet."""
    app: Any = live.server.config.app
    running: Processes = app.state.import_processes
    return running


def process_of(live: LiveServer, job_id: int) -> asyncio.subprocess.Process | None:
    """The job's process, as the server that started it keeps it (None once it ended and was reaped)."""
    return processes(live).running.get(job_id)


def idle(live: LiveServer, timeout: float = 120.0) -> None:
    """Waits until no job process of the server runs (a process is reaped a moment after its job ended)."""
    deadline = time.monotonic() + timeout
    while processes(live).running:
        assert time.monotonic() < deadline, "a job process still runs"
        time.sleep(0.02)


# ---- raw HTTP ---------------------------------------------------------------------------------------------


def request_head(path: str, *, length: int | None, auth: str | None, chunked: bool = False) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", "Content-Type: text/csv"]
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
