"""CORS and credentials prompts (issue 10, finding 5; security.Cors): ingestion answers every Origin with
credentials (the browser SDK); the read and admin API answers cross-origin only to the origins the operator
lists in `cors_origins`, never with credentials, never to `null`; no 401 asks the browser for Basic auth."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from profilestore.settings import Settings
from support import LiveServer, make_settings

LISTED = "https://dash.example.com"
STRANGERS = ["https://evil.example", "http://127.0.0.1:9999", "null", LISTED + ".evil.example"]
INGESTION = ["/engage", "/engage/", "/groups", "/groups/", "/track", "/track/", "/import", "/import/"]


def basic(secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{secret}:".encode()).decode()}


def preflight(client: httpx.Client, path: str, origin: str, method: str = "GET") -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization",
    }
    return client.options(path, headers=headers)


@pytest.fixture(scope="module")
def listing(database_url: str) -> Iterator[httpx.Client]:
    with (
        LiveServer(database_url, make_settings(cors_origins=f"{LISTED}, http://localhost:3000")) as live,
        httpx.Client(base_url=live.url, timeout=30) as client,
    ):
        yield client


@pytest.mark.parametrize("origin", [*STRANGERS, LISTED])
def test_no_cross_origin_reads_by_default(client: httpx.Client, project: dict[str, Any], origin: str) -> None:
    """The probe's finding: a page elsewhere read profiles through the browser's cached secret."""
    response = client.get("/api/2.0/engage", headers={**basic(project["api_secret"]), "Origin": origin})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers
    answer = preflight(client, "/api/2.0/engage", origin)
    assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize(
    "path", ["/api/2.0/engage", "/api/cohorts", "/api/ingestion-warnings", "/api/profiles/export"]
)
def test_listed_origins_read_without_credentials(
    listing: httpx.Client, project: dict[str, Any], path: str
) -> None:
    """A listed origin's page may read, sending the secret itself: no Allow-Credentials, so the browser's
    cached credentials and cookies are never used for it."""
    response = listing.get(path, headers={**basic(project["api_secret"]), "Origin": LISTED})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == LISTED
    assert "access-control-allow-credentials" not in response.headers
    answer = preflight(listing, path, LISTED)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == LISTED
    assert "authorization" in answer.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in answer.headers
    assert preflight(listing, "/api/cohorts/1", LISTED, "DELETE").status_code == 200


@pytest.mark.parametrize("origin", STRANGERS)
def test_unlisted_origins_are_not_answered(
    listing: httpx.Client, project: dict[str, Any], origin: str
) -> None:
    response = listing.get("/api/2.0/engage", headers={**basic(project["api_secret"]), "Origin": origin})
    assert "access-control-allow-origin" not in response.headers
    answer = preflight(listing, "/api/2.0/engage", origin)
    assert "access-control-allow-origin" not in answer.headers
    # The same origin is answered with credentials on ingestion: the browser SDK, on any site, sends with
    # credentials (docs/ingest.md section 1).
    for path in INGESTION:
        answer = preflight(listing, path, origin, "POST")
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == origin
        assert answer.headers["access-control-allow-credentials"] == "true"
        response = listing.post(path, data={"data": "e30="}, headers={"Origin": origin})
        assert response.headers["access-control-allow-origin"] == origin
        assert response.headers["access-control-allow-credentials"] == "true"


@pytest.mark.parametrize(
    "path",
    [
        "/api/2.0/engage",
        "/api/query/engage",
        "/api/2.0/export?from_date=2024-01-01&to_date=2024-01-02",
        "/api/2.0/cohorts/list",
        "/api/cohorts",
        "/api/ingestion-warnings",
        "/api/profiles/export",
        "/import",
    ],
)
def test_no_401_asks_for_basic_auth(client: httpx.Client, path: str) -> None:
    """A `WWW-Authenticate: Basic` prompt makes a browser ask for the secret and then send it, cached, with
    the requests other pages make."""
    for headers in ({}, basic("wrong")):
        response = client.get(path, headers=headers)
        assert response.status_code == 401
        assert "www-authenticate" not in response.headers


@pytest.mark.parametrize(
    "value", ["*", "null", "https://a.example, *", "https://a.example/path", "a.example"]
)
def test_wildcards_and_null_cannot_be_listed(value: str) -> None:
    with pytest.raises(ValidationError):
        Settings(cors_origins=value)


def test_listed_origins_are_read_as_browsers_send_them() -> None:
    settings = Settings(cors_origins=" https://Dash.Example.com/ ,http://localhost:3000,, ")
    assert settings.cors_origins == ("https://dash.example.com", "http://localhost:3000")
    assert Settings().cors_origins == ()
