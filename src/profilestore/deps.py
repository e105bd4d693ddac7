"""FastAPI dependencies: the app's settings, pools and token cache (owned by the lifespan), a pooled
connection for the length of a request (ConnDep; ReadConnDep on READ_DATABASE_URL's replica), and read auth.

All `async def`: a plain `def` dependency costs a thread-pool round trip on every request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from profilestore import auth, projects
from profilestore.db.connections import database
from profilestore.errors import Forbidden, Unauthorized
from profilestore.projects import TokenCache
from profilestore.settings import Settings


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _pool(request: Request) -> AsyncConnectionPool:
    pool: AsyncConnectionPool = request.app.state.pool
    return pool


async def _read_pool(request: Request) -> AsyncConnectionPool:
    """The pool of READ_DATABASE_URL (a replica) for reads that write nothing; the main pool without it."""
    pool: AsyncConnectionPool = request.app.state.read_pool
    return pool


async def _tokens(request: Request) -> TokenCache:
    tokens: TokenCache = request.app.state.tokens
    return tokens


SettingsDep = Annotated[Settings, Depends(_settings)]
PoolDep = Annotated[AsyncConnectionPool, Depends(_pool)]
ReadPoolDep = Annotated[AsyncConnectionPool, Depends(_read_pool)]
TokensDep = Annotated[TokenCache, Depends(_tokens)]


async def _connection(pool: PoolDep, settings: SettingsDep) -> AsyncIterator[AsyncConnection[Any]]:
    async with database(pool, settings) as conn:
        yield conn


async def _read_connection(pool: ReadPoolDep, settings: SettingsDep) -> AsyncIterator[AsyncConnection[Any]]:
    async with database(pool, settings) as conn:
        yield conn


ConnDep = Annotated[AsyncConnection[Any], Depends(_connection)]
ReadConnDep = Annotated[AsyncConnection[Any], Depends(_read_connection)]


async def _project_id(request: Request, pool: PoolDep, settings: SettingsDep) -> int:
    """The project whose API secret the request carries (docs/query.md: every read API needs it)."""
    credentials = auth.parse_credentials(
        request.headers.get("authorization"), request.query_params.get("project_id")
    )
    if credentials is None:
        raise Unauthorized()
    async with database(pool, settings) as conn:
        owner = await projects.project_of_secret(conn, credentials.secret)
    if owner is None:
        raise Unauthorized()
    if credentials.project_id is not None and credentials.project_id != owner:
        raise Forbidden(f"this secret does not belong to project {credentials.project_id}")
    return owner


ProjectDep = Annotated[int, Depends(_project_id)]
