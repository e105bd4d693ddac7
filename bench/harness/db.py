"""The bench database: a fresh one per run, beside the database of --database-url, and its projects."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
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


def drop_indexes(conn: psycopg.Connection[Any], where: str) -> list[tuple[str, str]]:
    """Drops the indexes of pg_indexes matching `where` (a condition on its columns) before a bulk load;
    returns their (name, definition) for rebuild_indexes."""
    indexes = [
        (r[0], r[1]) for r in conn.execute(f"SELECT indexname, indexdef FROM pg_indexes WHERE {where}")
    ]
    for name, _ in indexes:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    return indexes


def rebuild_indexes(conn: psycopg.Connection[Any], indexes: list[tuple[str, str]]) -> float:
    """Builds the dropped indexes again from their definitions (a partitioned table's `ON ONLY` dropped, so
    every partition gets its index); returns the seconds it took."""
    began = time.perf_counter()
    conn.execute("SET maintenance_work_mem = '1GB'")
    for name, definition in indexes:
        t0 = time.perf_counter()
        conn.execute(definition.replace(" ON ONLY ", " ON "))
        print(f"  rebuilt {name} in {time.perf_counter() - t0:.1f} s", flush=True)
    return round(time.perf_counter() - began, 1)
