"""Helpers of the cohort tests: loading a world of profiles and events by SQL, and asking for members."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from profilestore.cohorts import cohort_condition, universe
from profilestore.db.engine import libpq_dsn
from profilestore.expressions import SqlParams

T = TypeVar("T")
Row = dict[str, Any]


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def load_world(
    db: psycopg.Connection[Row],
    project_id: int,
    profiles: dict[str, dict[str, Any]],
    events: Iterable[tuple[str, str, dt.datetime, dict[str, Any]]],
) -> None:
    """Replaces the project's profiles, events and users_seen by these (events: name, user, time, props)."""
    for table in ("profiles", "events", "users_seen"):
        db.execute(f"DELETE FROM {table} WHERE project_id = %s", (project_id,))
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO profiles (project_id, distinct_id, properties) VALUES (%s, %s, %s)",
            [(project_id, d, Jsonb(p)) for d, p in profiles.items()],
        )
        cur.executemany(
            "INSERT INTO events (project_id, event, distinct_id, time, insert_id, properties)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [(project_id, e, d, t, f"i{n}", Jsonb(p)) for n, (e, d, t, p) in enumerate(events)],
        )
    db.execute(
        "INSERT INTO users_seen (project_id, distinct_id, first_seen, last_seen)"
        " SELECT project_id, distinct_id, min(time), max(time) FROM events"
        " WHERE project_id = %s AND distinct_id <> '' GROUP BY 1, 2",
        (project_id,),
    )


def with_conn(database_url: str, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    async def run() -> T:
        async with await psycopg.AsyncConnection.connect(
            libpq_dsn(database_url), autocommit=True, row_factory=dict_row
        ) as conn:
            return await work(conn)

    return asyncio.run(run())


async def members_of(
    conn: psycopg.AsyncConnection[Any], project_id: int, spec: Any, *, now: float, all_users: bool = True
) -> set[str]:
    params = SqlParams()
    users = universe(params, project_id, all_users=all_users)
    condition = await cohort_condition(
        conn, project_id, spec, distinct_id=users.distinct_id, params=params, now=now, profile=True
    )
    statement = sql.SQL("SELECT {} AS id FROM {} WHERE {} AND {}").format(
        users.distinct_id, users.source, users.where, condition
    )
    cur = await conn.execute(statement, params.values)
    return {r["id"] for r in await cur.fetchall()}


async def members_by_subquery(
    conn: psycopg.AsyncConnection[Any], project_id: int, spec: Any, *, now: float
) -> set[str]:
    """The same, with property filters as subqueries (profile=False): both forms must agree."""
    params = SqlParams()
    users = universe(params, project_id, all_users=True)
    condition = await cohort_condition(
        conn, project_id, spec, distinct_id=users.distinct_id, params=params, now=now
    )
    statement = sql.SQL("SELECT {} AS id FROM {} WHERE {} AND {}").format(
        users.distinct_id, users.source, users.where, condition
    )
    cur = await conn.execute(statement, params.values)
    return {r["id"] for r in await cur.fetchall()}
