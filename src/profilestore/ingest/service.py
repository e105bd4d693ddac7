"""/engage as a plain function: decoded records in, an `Outcome` out (routes.py renders it).

Steps: validate every record (records.py), resolve the project tokens, group the valid updates by profile
and apply them in one statement (sql.py).  The database being unreachable raises DatabaseUnavailable
(503, nothing applied: a retry is safe); every other failure is a per-record error.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from profilestore.errors import DatabaseUnavailable
from profilestore.ingest.geo import Locator, add_locations
from profilestore.ingest.records import record_id, validate_updates
from profilestore.ingest.responses import Outcome, RecordError
from profilestore.ingest.sql import apply_batch, apply_one_by_one, build_batch
from profilestore.projects import TokenCache
from profilestore.settings import Settings


@contextlib.asynccontextmanager
async def database(pool: AsyncConnectionPool, settings: Settings) -> AsyncIterator[AsyncConnection[Any]]:
    """A pooled connection; an unreachable database becomes DatabaseUnavailable (503 + Retry-After)."""
    try:
        async with pool.connection() as conn:
            yield conn
    except (PoolTimeout, psycopg.OperationalError) as exc:
        raise DatabaseUnavailable(
            f"database unavailable ({type(exc).__name__}); nothing was applied, retry later",
            retry_after=settings.retry_after_seconds,
        ) from exc


def connector(
    pool: AsyncConnectionPool, settings: Settings
) -> Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection[Any]]]:
    """`database(pool, settings)` as a no-argument factory (what TokenCache.resolve takes)."""
    return functools.partial(database, pool, settings)


async def ingest_profiles(
    records: list[Any],
    *,
    body_bytes: int,
    now: float,
    pool: AsyncConnectionPool,
    tokens: TokenCache,
    settings: Settings,
    client_ip: str | None = None,
    use_client_ip: bool = True,
    locator: Locator | None = None,
    kind: str = "profile",
) -> Outcome:
    """/engage (kind "profile") and /groups (kind "group"): the same rules under another key."""
    id_field = "$group_id" if kind == "group" else "$distinct_id"
    limit = settings.max_records
    over = [
        RecordError(i, id_field, record_id(r, id_field), "", f"a request holds at most {limit} records")
        for i, r in enumerate(records[limit:], start=limit)
    ]
    updates, errors = validate_updates(
        records[:limit], now=now, settings=settings, body_bytes=body_bytes, id_field=id_field
    )
    errors.extend(over)
    if kind == "profile":  # group profiles are not geolocated
        add_locations(updates, client_ip=client_ip, use_client_ip=use_client_ip, locator=locator)

    connect = connector(pool, settings)
    if updates:
        project_ids = await tokens.resolve(connect, {u.project_token for u in updates})
        known = []
        for update in updates:
            if project_ids.get(update.project_token) is None:
                errors.append(
                    RecordError(update.index, id_field, update.distinct_id, "$token", "unknown project token")
                )
            else:
                known.append(update)
        if known:
            batch = build_batch(known, {t: p for t, p in project_ids.items() if p is not None}, kind)
            async with connect() as conn:
                try:
                    await apply_batch(conn, batch, now, settings)
                except psycopg.errors.DataError:
                    refused = await apply_one_by_one(conn, batch, now, settings)
                    groups = dict(batch.groups())
                    for key, reason in refused.items():
                        distinct_id = groups[key]["d"]
                        message = f"refused by the database: {reason}"
                        for index in batch.indexes[key]:
                            errors.append(RecordError(index, id_field, distinct_id, "", message))
    errors.sort(key=lambda e: e.index)
    return Outcome(total=len(records), failures=errors)
