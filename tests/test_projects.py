"""The token cache ingestion uses: right answers, and bounded however many unknown tokens arrive."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg

from profilestore.db.engine import libpq_dsn
from profilestore.projects import TokenCache


def test_token_cache_resolves_and_stays_bounded(database_url: str, project: dict[str, Any]) -> None:
    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with await psycopg.AsyncConnection.connect(
            libpq_dsn(database_url), autocommit=True, row_factory=psycopg.rows.dict_row
        ) as conn:
            yield conn

    async def run() -> None:
        cache = TokenCache(max_entries=50)
        found = await cache.resolve(connect, {project["token"], "no-such-token"})
        assert found == {project["token"]: project["id"], "no-such-token": None}
        for i in range(20):
            await cache.resolve(connect, {f"junk-{i}-{j}" for j in range(10)})
            assert len(cache._entries) <= 50
        assert await cache.resolve(connect, {project["token"]}) == {project["token"]: project["id"]}

    asyncio.run(run())
