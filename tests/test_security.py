"""Headers and 500s (issue 10, finding 10; security.SecurityHeaders and security.CatchAll): `Cache-Control:
no-store` on every read and admin API answer, `X-Content-Type-Options: nosniff` on every answer, HSTS over
HTTPS; no interactive docs loading scripts from a CDN; a 500 says nothing internal, in the path's shape, and
keeps its connection."""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from psycopg_pool import PoolTimeout

from profilestore.cohorts import service as cohorts_service
from profilestore.ingest.profiles import routes as profile_ingest_routes
from profilestore.query.profiles import routes as profile_query_routes
from support import LiveServer, make_settings

SECRET_TEXT = 'relation "secret_table" does not exist at /srv/profilestore/x.py line 42'


def basic(secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{secret}:".encode()).decode()}


@pytest.mark.parametrize(
    "path",
    [
        "/api/2.0/engage",
        "/api/2.0/export?from_date=2024-01-01&to_date=2024-01-02",
        "/api/profiles/export",
        "/api/profiles/export?format=jsonl",
        "/api/cohorts",
        "/api/2.0/cohorts/list",
        "/api/ingestion-warnings",
    ],
)
def test_read_api_answers_are_not_stored(client: httpx.Client, project: dict[str, Any], path: str) -> None:
    for headers in (basic(project["api_secret"]), {}):
        response = client.get(path, headers=headers)
        assert response.status_code == (200 if headers else 401)
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_cohort_members_are_not_stored(client: httpx.Client, project: dict[str, Any]) -> None:
    auth = basic(project["api_secret"])
    created = client.post("/api/cohorts", json={"name": "s", "distinct_ids": ["a"]}, headers=auth)
    members = client.get(f"/api/cohorts/{created.json()['id']}/members", headers=auth)
    assert members.status_code == 200 and members.headers["cache-control"] == "no-store"
    response = client.post(
        "/api/events/query", json={"from_date": "2024-01-01", "to_date": "2024-01-02"}, headers=auth
    )
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/healthz"), ("GET", "/openapi.json"), ("POST", "/engage"), ("GET", "/nowhere")],
)
def test_nosniff_everywhere(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path, data={"data": "e30="} if method == "POST" else None)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in response.headers  # plain HTTP


def test_hsts_over_https(database_url: str, project: dict[str, Any]) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        certfile, keyfile = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert.cert_chain_pems[0].write_to_path(str(certfile))
        cert.private_key_pem.write_to_path(str(keyfile))
        tls = ssl.create_default_context()
        ca.configure_trust(tls)
        settings = make_settings(hsts_max_age_seconds=86400)
        with (
            LiveServer(database_url, settings, ssl_certfile=str(certfile), ssl_keyfile=str(keyfile)) as live,
            httpx.Client(base_url=live.url, verify=tls, timeout=30) as client,
        ):
            for path in ("/healthz", "/engage?data=e30=", "/api/2.0/engage"):
                response = client.get(path, headers=basic(project["api_secret"]))
                assert response.headers["strict-transport-security"] == "max-age=86400"


def test_no_interactive_docs_from_a_cdn(client: httpx.Client) -> None:
    """Swagger UI and ReDoc load their scripts from a CDN (blank offline, third-party code): off.  The
    OpenAPI document stays."""
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    document = client.get("/openapi.json")
    assert document.status_code == 200 and "/api/cohorts" in document.json()["paths"]


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(SECRET_TEXT)


def _exchange(port: int, requests: list[bytes]) -> list[tuple[int, dict[str, str], bytes]]:
    """Requests sent one after another on one connection; their answers (the connection must last)."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        buffer = b""
        for request in requests:
            sock.sendall(request)
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                assert chunk, f"the server closed the connection after {len(answers)} answers"
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
            length = int(headers.get("content-length", "0"))
            while len(buffer) < length:
                chunk = sock.recv(65536)
                assert chunk
                buffer += chunk
            answers.append((int(status_line.split()[1]), headers, buffer[:length]))
            buffer = buffer[length:]
    return answers


def test_a_500_says_nothing_internal_and_keeps_the_connection(
    server: LiveServer,
    project: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(cohorts_service, "list_cohorts", _boom)
    monkeypatch.setattr(cohorts_service, "mixpanel_list", _boom)
    monkeypatch.setattr(profile_ingest_routes, "handle", _boom)
    auth = "Authorization: " + basic(project["api_secret"])["Authorization"]
    requests = [
        f"GET /api/cohorts HTTP/1.1\r\nHost: t\r\n{auth}\r\n\r\n".encode(),
        f"GET /api/2.0/cohorts/list HTTP/1.1\r\nHost: t\r\n{auth}\r\n\r\n".encode(),
        b"GET /engage?data=e30%3D&verbose=1 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    ]
    with caplog.at_level(logging.ERROR):
        own, mixpanel, ingestion, health = _exchange(server.port, requests)
    message = "unexpected error; it has been logged"
    assert own[0] == 500 and json.loads(own[2]) == {"error": "InternalError", "detail": message}
    assert mixpanel[0] == 500 and json.loads(mixpanel[2]) == {"error": message}
    assert ingestion[0] == 500
    assert json.loads(ingestion[2]) == {"code": 500, "status": "Internal Server Error", "error": message}
    for _, headers, body in (own, mixpanel, ingestion):
        assert b"secret_table" not in body and b"RuntimeError" not in body
        assert headers.get("connection") != "close"
        assert headers["x-content-type-options"] == "nosniff"
    assert health[0] == 200
    logged = [r for r in caplog.records if r.exc_info and SECRET_TEXT in str(r.exc_info[1])]
    assert len(logged) == 3  # once each, by the service; none by uvicorn as "Exception in ASGI application"


def test_an_unreachable_pool_is_a_503_that_keeps_the_connection(
    server: LiveServer, project: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def timeout(*args: Any, **kwargs: Any) -> Any:
        raise PoolTimeout("couldn't get a connection after 5.00 sec")

    monkeypatch.setattr(profile_query_routes, "query_profiles", timeout)
    auth = "Authorization: " + basic(project["api_secret"])["Authorization"]
    engage = f"GET /api/2.0/engage HTTP/1.1\r\nHost: t\r\n{auth}\r\n\r\n".encode()
    first, second = _exchange(server.port, [engage, engage])
    for status, headers, body in (first, second):
        assert status == 503 and headers["retry-after"] == "5"
        assert json.loads(body) == {"error": "database unavailable, retry later"}
