"""FastAPI dependencies: the app's settings, pool and token cache (owned by the lifespan), and read auth.

All `async def`: a plain `def` dependency costs a thread-pool round trip on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from profilestore import auth, projects
from profilestore.errors import BadRequest, Forbidden, Unauthorized
from profilestore.ingest.service import database
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


async def _project_id(request: Request, pool: PoolDep, settings: SettingsDep) -> int:
    """The project whose API secret the request carries (docs/query.md: every read API needs it)."""
    credentials = auth.basic_credentials(request.headers.get("authorization"))
    if credentials is None:
        raise Unauthorized()
    raw_project = request.query_params.get("project_id")
    project_id: int | None = None
    if raw_project:
        try:
            project_id = int(raw_project)
        except ValueError:
            raise BadRequest("project_id must be an integer") from None
    secret = auth.candidate_secret(credentials, service_account=project_id is not None)
    async with database(pool, settings) as conn:
        owner = await projects.project_of_secret(conn, secret)
    if owner is None:
        raise Unauthorized()
    if project_id is not None and project_id != owner:
        raise Forbidden(f"this secret does not belong to project {project_id}")
    return owner


ProjectDep = Annotated[int, Depends(_project_id)]
