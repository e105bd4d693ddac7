"""Read-API authentication in every form docs/query.md accepts, over HTTP (GET /api/ingestion-warnings)."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from profilestore import projects
from profilestore.auth import basic_credentials, hash_secret, parse_credentials, secret_matches
from profilestore.db.engine import libpq_dsn
from profilestore.errors import BadRequest
from support import new_project


def basic(text: str, *, encode: bool = True) -> dict[str, str]:
    value = base64.b64encode(text.encode()).decode() if encode else text
    return {"Authorization": f"Basic {value}"}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Basic " + base64.b64encode(b"s3cret:").decode(), ("s3cret", "")),
        ("Basic " + base64.b64encode(b"svc-user:s3cret").decode(), ("svc-user", "s3cret")),
        ("Basic s3cret:", ("s3cret", "")),
        ("basic s3cret", ("s3cret", "")),
        ("Bearer x", None),
        (None, None),
    ],
)
def test_basic_credentials_forms(header: str | None, expected: tuple[str, str] | None) -> None:
    assert basic_credentials(header) == expected


def test_secret_hash_comparison() -> None:
    assert secret_matches("abc", hash_secret("abc"))
    assert not secret_matches("abd", hash_secret("abc"))


def test_read_api_auth_forms(client: httpx.Client, project: dict[str, Any], database_url: str) -> None:
    secret, pid = project["api_secret"], project["id"]
    url = "/api/ingestion-warnings"
    assert client.get(url, headers=basic(f"{secret}:")).status_code == 200
    assert client.get(url, headers=basic(f"{secret}:", encode=False)).status_code == 200
    service_account = basic(f"svc-user:{secret}")
    assert client.get(url, params={"project_id": pid}, headers=service_account).status_code == 200

    for headers in ({}, basic("wrong:"), basic(f"svc-user:{secret}x")):
        response = client.get(
            url, params={"project_id": pid} if "svc" in str(headers) else {}, headers=headers
        )
        assert response.status_code == 401
        assert "www-authenticate" not in response.headers  # no browser prompt (issue 10)
        assert "error" in response.json()

    other = new_project(database_url)
    forbidden = client.get(url, params={"project_id": other["id"]}, headers=basic(f"svc-user:{secret}"))
    assert forbidden.status_code == 403
    bad_id = client.get(url, params={"project_id": "x"}, headers=basic(f"{secret}:"))
    assert bad_id.status_code == 400


@pytest.mark.parametrize(
    ("header", "project_id", "api_key", "expected"),
    [
        (None, None, "", None),
        ("Basic c2VjcmV0Og==", None, "", ("secret", "", None, "secret")),  # secret:
        ("Basic c2VjcmV0Og==", " 7 ", "", ("secret", "", 7, "secret")),
        ("Basic sa:pw", "7", "", ("sa", "pw", 7, "pw")),  # a service account's password is the secret
        ("Basic sa:pw", None, "", ("sa", "pw", None, "sa")),
        (None, None, "key", ("key", "", None, "key")),  # /import's legacy api_key
        ("Basic tok:", None, "key", ("tok", "", None, "tok")),  # the header wins
    ],
)
def test_parse_credentials(
    header: str | None,
    project_id: str | None,
    api_key: str,
    expected: tuple[str, str, int | None, str] | None,
) -> None:
    found = parse_credentials(header, project_id, api_key=api_key)
    got = None if found is None else (found.user, found.password, found.project_id, found.secret)
    assert got == expected


def test_parse_credentials_refuses_a_project_id_that_is_not_an_integer() -> None:
    with pytest.raises(BadRequest, match=r"^project_id must be an integer$"):
        parse_credentials("Basic s:", "seven")


def test_a_rotated_secret_keeps_working_for_its_grace_period(
    client: httpx.Client, database_url: str, db: Any
) -> None:
    """`projects rotate-secret NAME --grace 1h`: the old and the new secret both work until the grace ends;
    without a grace, or after it, only the new one; a second rotation ends the first one's grace."""
    project = new_project(database_url)
    old = project["api_secret"]

    def rotate(grace: float) -> str:
        async def run() -> str:
            async with await psycopg.AsyncConnection.connect(
                libpq_dsn(database_url), autocommit=True, row_factory=dict_row
            ) as conn:
                return await projects.rotate_secret(conn, project["name"], grace)

        return asyncio.run(run())

    def works(secret: str) -> bool:
        status = client.get("/api/ingestion-warnings", headers=basic(f"{secret}:")).status_code
        assert status in (200, 401)
        return status == 200

    new = rotate(3600)
    assert works(old) and works(new)
    imported = [
        {"event": "E", "properties": {"distinct_id": "u", "time": int(time.time()), "$insert_id": "a"}}
    ]
    assert client.post("/import", json=imported, auth=(old, "")).status_code == 200  # ingestion too
    db.execute(
        "UPDATE projects SET previous_secret_until = now() - interval '1 second' WHERE id = %s",
        (project["id"],),
    )
    assert not works(old) and works(new)

    newer = rotate(3600)
    newest = rotate(3600)  # the grace covers the secret just replaced, never an older one
    assert not works(new) and works(newer) and works(newest)
    last = rotate(0)
    assert not works(newer) and not works(newest) and works(last)
