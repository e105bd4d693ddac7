"""Pooled connections as the service uses them: one place that turns an unreachable database into
DatabaseUnavailable (503 with Retry-After: nothing was applied, a retry is safe).

    database(pool, settings)     a connection for the length of a `with` block (routes get it as deps.ConnDep)
    connector(pool, settings)    the same as a no-argument factory (what the ingestion pipeline and
                                 TokenCache.resolve take: they open a connection only when they need one)
    checkout(pool, settings)     a connection that outlives the block that took it (a pagination session's
                                 build finishes in the background); the caller gives it back to the pool
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from profilestore.errors import DatabaseUnavailable
from profilestore.settings import Settings

log = logging.getLogger("profilestore")

Connector = Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection[Any]]]

UNAVAILABLE = (PoolTimeout, psycopg.OperationalError)


def unavailable(exc: Exception, settings: Settings) -> DatabaseUnavailable:
    """The 503 for an unreachable database, or for a statement cancelled at its time limit
    (statement_timeout_seconds, db/engine.py); what psycopg said goes to the log, never to the client."""
    log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
    if isinstance(exc, psycopg.errors.QueryCanceled):
        message = "the database work of this request ran past its time limit and was stopped"
    else:
        message = "database unavailable"
    return DatabaseUnavailable(
        f"{message}; nothing was applied, retry later", retry_after=settings.retry_after_seconds
    )


@contextlib.asynccontextmanager
async def database(pool: AsyncConnectionPool, settings: Settings) -> AsyncIterator[AsyncConnection[Any]]:
    """A pooled connection; an unreachable database becomes DatabaseUnavailable."""
    try:
        async with pool.connection() as conn:
            yield conn
    except UNAVAILABLE as exc:
        raise unavailable(exc, settings) from exc


def connector(pool: AsyncConnectionPool, settings: Settings) -> Connector:
    """`database(pool, settings)` as a no-argument factory."""
    return functools.partial(database, pool, settings)


async def checkout(pool: AsyncConnectionPool, settings: Settings) -> AsyncConnection[Any]:
    """A connection taken from the pool until `pool.putconn(conn)`."""
    try:
        conn: AsyncConnection[Any] = await pool.getconn()
    except UNAVAILABLE as exc:
        raise unavailable(exc, settings) from exc
    return conn
