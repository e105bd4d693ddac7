"""Pagination sessions of /api/2.0/engage: page 0 at once, the rest of the session built just after.

A session pins the matching ids and their order as of its first request (docs/query.md).  Storing every id
before
answering would make the first page cost as much as storing them (measured: 2-12x a plain count on 1M
profiles), so the first request runs in ONE repeatable-read transaction:

1. take an advisory lock named after the session (held to the end of the transaction);
2. count the matches and read the first page's ids and rows: the answer, sent at once;
3. then, in the background and in the same snapshot, store every id, a row per page (`CREATE_SESSION`),
   and commit, which releases the lock.  (When every match is on page 0, its ids are stored at once.)

A request for a later page that finds no session row waits for that lock (the session may still be being
built: the client only knows its id once step 2 is done), then looks once more.  The lock lives in Postgres,
so this holds across app processes and hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from profilestore.db.connections import checkout
from profilestore.db.engine import long_running
from profilestore.query.profiles import sql as q
from profilestore.settings import Settings

log = logging.getLogger("profilestore.query")

# Builds in flight: kept referenced until done (asyncio holds tasks weakly).
_BUILDS: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class Matches:
    """What a session is made of: FROM, WHERE and ORDER BY over the matching ids, with their parameters."""

    source: sql.Composable
    distinct_id: sql.Composable
    where: sql.Composable
    order: sql.Composable
    params: dict[str, Any]


@dataclass(frozen=True)
class Session:
    group_key: str | None
    page_size: int
    total: int
    all_users: bool


async def create(
    pool: AsyncConnectionPool,
    matches: Matches,
    session: Session,
    session_id: str,
    project_id: int,
    *,
    first_page: sql.Composed,
    page_params: dict[str, Any],
    settings: Settings,
) -> tuple[int, list[str]]:
    """Counts the matches and renders page 0 (`first_page` with `page_params`: rows of the ids
    `%(first_ids)s`); the session's pages are stored in the background.  Returns (total, page 0's rows)."""
    conn = await checkout(pool, settings)
    params = {
        **page_params,
        **matches.params,
        "session_id": session_id,
        "project_id": project_id,
        "page_size": session.page_size,
        "group_key": session.group_key,
        "all_users": session.all_users,
    }
    try:
        await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await conn.execute(q.LOCK_SESSION, params)
        parts = {"source": matches.source, "distinct_id": matches.distinct_id, "where": matches.where}
        cur = await conn.execute(sql.SQL(q.COUNT_MATCHES).format(**parts), params)
        total = int((await cur.fetchone() or {"total": 0})["total"])
        cur = await conn.execute(sql.SQL(q.FIRST_IDS).format(order=matches.order, **parts), params)
        row = await cur.fetchone()
        params["first_ids"] = row["ids"] if row else []
        cur = await conn.execute(first_page, params)
        rows = [r["row"] for r in await cur.fetchall()]
        small = total <= session.page_size
        if small:
            await conn.execute(q.CREATE_SMALL_SESSION, {**params, "total": total})
            await conn.execute("COMMIT")
        else:
            await long_running(conn, settings)  # storing every match, in the background, is long work
    except BaseException:
        await _release(pool, conn, commit=False)
        raise
    if small:
        await _release(pool, conn, commit=True)
        return total, rows
    build = sql.SQL(q.CREATE_SESSION).format(order=matches.order, **parts)
    task = asyncio.create_task(_build(pool, conn, build, params))
    _BUILDS.add(task)
    task.add_done_callback(_BUILDS.discard)
    return total, rows


async def finish_builds(timeout: float) -> None:
    """Lets the builds of this event loop finish (the app's shutdown, before its pool closes)."""
    loop = asyncio.get_running_loop()
    mine = {task for task in _BUILDS if task.get_loop() is loop}
    if mine:
        await asyncio.wait(mine, timeout=timeout)


async def _build(
    pool: AsyncConnectionPool, conn: AsyncConnection[Any], build: sql.Composed, params: dict[str, Any]
) -> None:
    committed = False
    try:
        await conn.execute(build, params)
        await conn.execute("COMMIT")
        committed = True
    except Exception:
        log.exception("building pagination session %s failed", params.get("session_id"))
    finally:
        await _release(pool, conn, commit=committed)


async def _release(pool: AsyncConnectionPool, conn: AsyncConnection[Any], *, commit: bool) -> None:
    if not commit:
        with contextlib.suppress(psycopg.Error):
            await conn.execute("ROLLBACK")
    await pool.putconn(conn)


async def open_session(
    conn: AsyncConnection[Any], session_id: str, project_id: int, *, idle_seconds: float
) -> Session | None:
    """The session, once built (waiting for a build in progress); None when unknown or expired."""
    params = {"session_id": session_id, "project_id": project_id, "idle": idle_seconds}
    row = await (await conn.execute(q.OPEN_SESSION, params)).fetchone()
    if row is None:
        async with conn.transaction():
            # As long as the build takes: it is bounded by its own (long) statement timeout.
            await conn.execute("SELECT set_config('statement_timeout', '0', true)")
            await conn.execute(q.WAIT_FOR_SESSION, params)
        row = await (await conn.execute(q.OPEN_SESSION, params)).fetchone()
        if row is None:
            return None
    return Session(
        group_key=row["group_key"], page_size=row["page_size"], total=row["total"], all_users=row["all_users"]
    )
