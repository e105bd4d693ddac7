"""HTTP routes of event ingestion, `/track` and `/import` (docs/ingest.md sections 1, 2 and 5): the
ingestion pipeline (ingest/pipeline.py) with the rules of events (service.py), and /import's credentials.

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

from fastapi import APIRouter, Request, Response

from profilestore import auth, projects
from profilestore.db.connections import Connector, connector
from profilestore.deps import PoolDep, SettingsDep, TokensDep
from profilestore.errors import Unauthorized
from profilestore.ingest.events.service import Events
from profilestore.ingest.pipeline import handle
from profilestore.ingest.responses import options_response
from profilestore.projects import TokenCache
from profilestore.routing import add_routes

router = APIRouter()

_BAD_CREDENTIALS = "invalid credentials: use the API secret or the project token as the Basic user name"
_NO_CREDENTIALS = (
    "missing credentials: /import needs HTTP Basic auth with the API secret or the project token"
)


async def track(request: Request, settings: SettingsDep, pool: PoolDep, tokens: TokensDep) -> Response:
    events = Events(settings, importing=False)
    return await handle(request, events, tokens=tokens, connect=connector(pool, settings))


async def import_(request: Request, settings: SettingsDep, pool: PoolDep, tokens: TokensDep) -> Response:
    connect = connector(pool, settings)

    async def authenticate(request: Request, params: dict[str, str]) -> int:
        return await _import_project(request, params, connect, tokens)

    events = Events(settings, importing=True)
    return await handle(
        request, events, tokens=tokens, connect=connect, authenticate=authenticate, strict_unless_verbose=True
    )


add_routes(router, ["/track/", "/track"], track, summary="Mixpanel /track: events")
add_routes(router, ["/import/", "/import"], import_, summary="Mixpanel /import: events, authenticated")


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
