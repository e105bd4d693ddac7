"""Fixtures: a database built by the migrations, a fresh project per test, the app over real HTTP.

With DATABASE_URL set (CI: the machine's Postgres server) each run creates a database of its own on that
server and drops it at the end; without it, an embedded Postgres in a temporary directory.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from profilestore.db import migrate
from profilestore.db.engine import connect
from support import LiveServer, make_settings, new_project, replace_dbname


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    server_url = os.environ.get("DATABASE_URL")
    if server_url:
        name = f"profilestore_test_{uuid.uuid4().hex[:10]}"
        with connect(server_url) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        url = replace_dbname(server_url, name)
        migrate.upgrade(url)
        yield url
        with connect(server_url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        from profilestore.db.embedded import embedded_database_url, stop_embedded

        with tempfile.TemporaryDirectory(prefix="profilestore-test-") as home:
            os.chmod(home, 0o755)  # as root, the embedded server runs as a user of its own
            url = embedded_database_url(Path(home))
            try:
                migrate.upgrade(url)
                yield url
            finally:
                stop_embedded(Path(home))  # before the directory goes


@pytest.fixture(scope="session")
def db(database_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A plain autocommit connection for looking at rows."""
    with connect(database_url) as conn:
        yield conn


@pytest.fixture(scope="session")
def server(database_url: str) -> Iterator[LiveServer]:
    with LiveServer(database_url, make_settings()) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture
def project(database_url: str) -> dict[str, Any]:
    """A fresh project per test: tests never see each other's profiles."""
    return new_project(database_url)
