"""HTTP routes of profile updates, `/engage` and `/groups`: the ingestion pipeline (ingest/pipeline.py) with
the rules of profile updates (service.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from profilestore.db.connections import connector
from profilestore.deps import PoolDep, SettingsDep, TokensDep
from profilestore.ingest.pipeline import handle
from profilestore.ingest.profiles.service import ProfileUpdates
from profilestore.ingest.responses import options_response
from profilestore.routing import add_routes

router = APIRouter()


async def engage(request: Request, settings: SettingsDep, pool: PoolDep, tokens: TokensDep) -> Response:
    return await handle(request, ProfileUpdates(settings), tokens=tokens, connect=connector(pool, settings))


async def groups(request: Request, settings: SettingsDep, pool: PoolDep, tokens: TokensDep) -> Response:
    updates = ProfileUpdates(settings, kind="group")
    return await handle(request, updates, tokens=tokens, connect=connector(pool, settings))


add_routes(router, ["/engage/", "/engage"], engage, summary="Mixpanel /engage: profile updates")
add_routes(router, ["/groups/", "/groups"], groups, summary="Mixpanel /groups: group profile updates")


@router.options("/engage", include_in_schema=False)
@router.options("/engage/", include_in_schema=False)
@router.options("/groups", include_in_schema=False)
@router.options("/groups/", include_in_schema=False)
async def engage_options() -> Response:
    return options_response()
