"""FastAPI dependencies: the app's settings, pools and token cache (owned by the lifespan), a pooled
connection for the length of a request (ConnDep; ReadConnDep on READ_DATABASE_URL's replica), and read auth.

Pools: the read and admin API (paths under `/api/`) and its authentication take their connections from a
pool of their own (`api_pool_size`), ingestion and the rest from the main pool, so that writers holding
every ingestion connection never make a read wait for one (pool_for).

Read auth: security.ApiGuard checks the credentials of every `/api/` request before any of its body is read
(authenticate) and leaves the project in the request's scope, where ProjectDep finds it: one check a request.

All `async def`: a plain `def` dependency costs a thread-pool round trip on every request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from starlette.datastructures import State

from profilestore import auth, projects
from profilestore.db.connections import database
from profilestore.errors import Forbidden, Unauthorized
from profilestore.projects import TokenCache
from profilestore.settings import Settings

API_PREFIX = "/api/"
# The scope key under which security.ApiGuard leaves the authenticated project's id.
PROJECT_SCOPE_KEY = "profilestore.project_id"


# The reads served by READ_DATABASE_URL's replica (their routes take ReadPoolDep/ReadConnDep): their secret is
# checked on the replica too, so that they keep answering while the primary is down (auth_pool_for).
REPLICA_READS = frozenset({"/api/2.0/export", "/api/events/query", "/api/profiles/export"})


def pool_for(state: State, path: str) -> AsyncConnectionPool:
    """The pool a request for `path` takes its connections from: the read and admin API's own, or the main."""
    pool: AsyncConnectionPool = state.api_pool if path.startswith(API_PREFIX) else state.pool
    return pool


def auth_pool_for(state: State, path: str) -> tuple[AsyncConnectionPool, auth.VerifiedSecrets | None]:
    """Where the API secret of a request for `path` is checked: on the replica (with its cache of secrets
    verified there) for the reads it serves, else where the request runs (pool_for)."""
    if path.rstrip("/") in REPLICA_READS and state.read_pool is not state.api_pool:
        return state.read_pool, state.verified_secrets
    return pool_for(state, path), None


async def authenticate(
    pool: AsyncConnectionPool,
    settings: Settings,
    authorization: str | None,
    project_id: str | None,
    verified: auth.VerifiedSecrets | None = None,
) -> int:
    """The project whose API secret the credentials carry (docs/query.md: every read API needs it); else
    Unauthorized (401), Forbidden (403, another project's id) or BadRequest (a project_id not an integer).
    With `verified` (the replica's reads), a secret verified there in the last `secret_cache_seconds` is
    taken without asking the database."""
    credentials = auth.parse_credentials(authorization, project_id)
    if credentials is None:
        raise Unauthorized()
    owner = verified.get(credentials.secret) if verified is not None else None
    if owner is None:
        async with database(pool, settings) as conn:
            owner = await projects.project_of_secret(conn, credentials.secret)
        if owner is not None and verified is not None:
            verified.put(credentials.secret, owner)
    if owner is None:
        raise Unauthorized()
    if credentials.project_id is not None and credentials.project_id != owner:
        raise Forbidden(f"this secret does not belong to project {credentials.project_id}")
    return owner


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _pool(request: Request) -> AsyncConnectionPool:
    return pool_for(request.app.state, request.scope["path"])


async def _read_pool(request: Request) -> AsyncConnectionPool:
    """The pool of READ_DATABASE_URL (a replica) for reads that write nothing; the API's pool without it."""
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
    """The project security.ApiGuard authenticated (every `/api/` request); a route elsewhere checks here."""
    checked: int | None = request.scope.get(PROJECT_SCOPE_KEY)
    if checked is not None:
        return checked
    return await authenticate(
        pool, settings, request.headers.get("authorization"), request.query_params.get("project_id")
    )


ProjectDep = Annotated[int, Depends(_project_id)]
