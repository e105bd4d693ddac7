"""HTTP routes of event ingestion, `/track` and `/import` (docs/ingest.md sections 1, 2 and 5): thin
wrappers over service.py through the ingestion pipeline's request handling, and /import's credentials.

/import credentials, any of:
* HTTP Basic with the project's API secret as user name and an empty password (the Python SDK's
  `import_data(..., api_secret=...)`, the Node SDK's `import` with `secret`, curl `-u SECRET:`);
* HTTP Basic with the project token as user name and an empty password;
* a service account `user:secret` with `project_id` (query string or form field), as the read API takes it;
* legacy, without an Authorization header: `api_key` (query string or form field) holding the API secret or
  the project token (older Python and Node SDKs sent only `api_key`).
/import answers in strict mode by default, unless the request asks for `verbose` itself: the Python SDK
sends `verbose=1` and requires `{"status": 1}` back.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from profilestore import auth, projects
from profilestore.db.connections import Connector, connector
from profilestore.deps import PoolDep, SettingsDep, TokensDep
from profilestore.errors import Unauthorized
from profilestore.ingest.events.service import ingest_events
from profilestore.ingest.pipeline import handle
from profilestore.ingest.responses import Outcome, options_response
from profilestore.projects import TokenCache

router = APIRouter()

_BAD_CREDENTIALS = "invalid credentials: use the API secret or the project token as the Basic user name"
_NO_CREDENTIALS = (
    "missing credentials: /import needs HTTP Basic auth with the API secret or the project token"
)


@router.api_route("/track", methods=["GET", "POST"], include_in_schema=False)
@router.api_route("/track/", methods=["GET", "POST"], summary="Mixpanel /track: events")
async def track(request: Request, settings: SettingsDep, pool: PoolDep, tokens: TokensDep) -> Response:
    connect = connector(pool, settings)

    async def run(records: list[Any], size: int, now: float, project_id: int | None) -> Outcome:
        return await ingest_events(
            records,
            body_bytes=size,
            now=now,
            project_id=None,
            tokens=tokens,
            connect=connect,
            settings=settings,
        )

    return await handle(request, settings, run)


@router.api_route("/import", methods=["GET", "POST"], include_in_schema=False)
@router.api_route("/import/", methods=["GET", "POST"], summary="Mixpanel /import: events, authenticated")
async def import_(request: Request, settings: SettingsDep, pool: PoolDep, tokens: TokensDep) -> Response:
    connect = connector(pool, settings)

    async def authenticate(request: Request, params: dict[str, str]) -> int:
        return await _import_project(request, params, connect, tokens)

    async def run(records: list[Any], size: int, now: float, project_id: int | None) -> Outcome:
        return await ingest_events(
            records,
            body_bytes=size,
            now=now,
            project_id=project_id,
            tokens=tokens,
            connect=connect,
            settings=settings,
        )

    return await handle(request, settings, run, authenticate=authenticate, strict_unless_verbose=True)


@router.options("/track", include_in_schema=False)
@router.options("/track/", include_in_schema=False)
@router.options("/import", include_in_schema=False)
@router.options("/import/", include_in_schema=False)
async def events_options() -> Response:
    return options_response()


async def _import_project(
    request: Request, params: dict[str, str], connect: Connector, tokens: TokenCache
) -> int:
    """The project an /import request's credentials name (see the module's docstring); else Unauthorized."""
    credentials = auth.parse_credentials(
        request.headers.get("authorization"),
        params.get("project_id"),
        api_key=params.get("api_key", "").strip(),
    )
    if credentials is None:
        raise Unauthorized(_NO_CREDENTIALS)
    user, password, wanted = credentials.user, credentials.password, credentials.project_id
    if user and not password:
        by_token = (await tokens.resolve(connect, {user})).get(user)
        if by_token is not None and wanted in (None, by_token):
            return by_token
    secret = credentials.secret
    if not secret:
        raise Unauthorized(_BAD_CREDENTIALS)
    async with connect() as conn:
        project_id = await projects.project_of_secret(conn, secret, wanted)
    if project_id is None:
        raise Unauthorized(_BAD_CREDENTIALS)
    return project_id
