"""The bench database: a fresh one per run, beside the database of --database-url, and its projects."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row

from profilestore import projects
from profilestore.db.engine import libpq_dsn

# The database of the running bench: the helpers below and the CPU accounting (which counts the Postgres
# backends serving it) read it when called.  Each bench names its own with use_database() first thing.
BENCH_DB = "profilestore_bench"


def use_database(name: str) -> None:
    global BENCH_DB
    BENCH_DB = name


def bench_url(base: str) -> str:
    parts = urlsplit(libpq_dsn(base))
    return urlunsplit(parts._replace(path="/" + BENCH_DB))


def create_database(base: str) -> None:
    with psycopg.connect(libpq_dsn(base), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")


def drop_database(base: str) -> None:
    with psycopg.connect(libpq_dsn(base), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


def create_projects(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two projects: "bench" for the service, "bench-raw" for the raw Postgres phases."""

    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            return await projects.create_project(conn, "bench"), await projects.create_project(
                conn, "bench-raw"
            )

    return asyncio.run(run())


def create_project(url: str) -> dict[str, Any]:
    """One project, "bench-query", for the read benches."""

    async def run() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            return await projects.create_project(conn, "bench-query")

    return asyncio.run(run())
