"""HTTP routes of event ingestion, `/track` and `/import` (docs/ingest.md sections 1, 2 and 5), and their
glue:
decode (wire.py), authenticate (/import), apply (events_service.py), answer in Mixpanel's shapes
(responses.py).

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

import time

from fastapi import APIRouter, Request, Response
from psycopg_pool import AsyncConnectionPool

from profilestore import auth, projects
from profilestore.deps import PoolDep, SettingsDep, TokensDep
from profilestore.errors import BadRequest, ProfilestoreError, Unauthorized
from profilestore.ingest.events_service import ingest_events
from profilestore.ingest.responses import Outcome, ingest_error_response, ingest_response
from profilestore.ingest.service import connector
from profilestore.ingest.wire import read_wire_request
from profilestore.projects import TokenCache
from profilestore.settings import Settings

router = APIRouter()

_BAD_CREDENTIALS = "invalid credentials: use the API secret or the project token as the Basic user name"
_NO_CREDENTIALS = (
    "missing credentials: /import needs HTTP Basic auth with the API secret or the project token"
)


@router.api_route("/track", methods=["GET", "POST"], include_in_schema=False)
@router.api_route("/track/", methods=["GET", "POST"], summary="Mixpanel /track: events")
async def track(request: Request, settings: SettingsDep, pool: PoolDep, tokens: TokensDep) -> Response:
    return await _ingest(request, settings, pool, tokens, importing=False)


@router.api_route("/import", methods=["GET", "POST"], include_in_schema=False)
@router.api_route("/import/", methods=["GET", "POST"], summary="Mixpanel /import: events, authenticated")
async def import_(request: Request, settings: SettingsDep, pool: PoolDep, tokens: TokensDep) -> Response:
    return await _ingest(request, settings, pool, tokens, importing=True)


@router.options("/track", include_in_schema=False)
@router.options("/track/", include_in_schema=False)
@router.options("/import", include_in_schema=False)
@router.options("/import/", include_in_schema=False)
async def events_options() -> Response:
    """Plain OPTIONS (a CORS preflight proper is answered by the CORS middleware before it gets here)."""
    return Response(status_code=200, headers={"Allow": "GET, POST, OPTIONS"})


async def _ingest(
    request: Request, settings: Settings, pool: AsyncConnectionPool, tokens: TokenCache, *, importing: bool
) -> Response:
    now = time.time()
    params: dict[str, str] = dict(request.query_params)
    strict_default = importing and "verbose" not in params
    try:
        wire = await read_wire_request(request, max_body_bytes=settings.max_body_bytes)
        params = wire.params
        strict_default = importing and "verbose" not in params
        project_id = None
        if importing:
            project_id = await _import_project(request, params, pool, tokens, settings)
        if wire.records is None:
            outcome = Outcome(total=0, failures=[], body_error=wire.error)
        else:
            outcome = await ingest_events(
                wire.records,
                body_bytes=wire.size,
                now=now,
                project_id=project_id,
                pool=pool,
                tokens=tokens,
                settings=settings,
            )
    except ProfilestoreError as exc:
        return ingest_error_response(params, exc)
    return ingest_response(params, outcome, strict_default=strict_default)


async def _import_project(
    request: Request,
    params: dict[str, str],
    pool: AsyncConnectionPool,
    tokens: TokenCache,
    settings: Settings,
) -> int:
    """The project an /import request's credentials name (see the module's docstring); else Unauthorized."""
    credentials = auth.basic_credentials(request.headers.get("authorization"))
    if credentials is None:
        api_key = params.get("api_key", "").strip()
        if not api_key:
            raise Unauthorized(_NO_CREDENTIALS)
        credentials = (api_key, "")
    raw_project = params.get("project_id", "").strip()
    wanted: int | None = None
    if raw_project:
        try:
            wanted = int(raw_project)
        except ValueError:
            raise BadRequest("project_id must be an integer") from None
    user, password = credentials
    connect = connector(pool, settings)
    if user and not password:
        by_token = (await tokens.resolve(connect, {user})).get(user)
        if by_token is not None and wanted in (None, by_token):
            return by_token
    secret = auth.candidate_secret(credentials, service_account=wanted is not None)
    if not secret:
        raise Unauthorized(_BAD_CREDENTIALS)
    async with connect() as conn:
        project_id = await projects.project_of_secret(conn, secret, wanted)
    if project_id is None:
        raise Unauthorized(_BAD_CREDENTIALS)
    return project_id
