"""HTTP routes of profile updates, `/engage` and `/groups`: the ingestion pipeline (ingest/pipeline.py) with
the rules of profile updates (service.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from profilestore.db.connections import connector
from profilestore.deps import PoolDep, SettingsDep, TokensDep
from profilestore.ingest.pipeline import handle
from profilestore.ingest.profiles.service import ProfileUpdates
from profilestore.ingest.responses import options_response

router = APIRouter()


@router.api_route("/engage", methods=["GET", "POST"], include_in_schema=False)
@router.api_route("/engage/", methods=["GET", "POST"], summary="Mixpanel /engage: profile updates")
async def engage(request: Request, settings: SettingsDep, pool: PoolDep, tokens: TokensDep) -> Response:
    return await handle(request, ProfileUpdates(settings), tokens=tokens, connect=connector(pool, settings))


@router.api_route("/groups", methods=["GET", "POST"], include_in_schema=False)
@router.api_route("/groups/", methods=["GET", "POST"], summary="Mixpanel /groups: group profile updates")
async def groups(request: Request, settings: SettingsDep, pool: PoolDep, tokens: TokensDep) -> Response:
    updates = ProfileUpdates(settings, kind="group")
    return await handle(request, updates, tokens=tokens, connect=connector(pool, settings))


@router.options("/engage", include_in_schema=False)
@router.options("/engage/", include_in_schema=False)
@router.options("/groups", include_in_schema=False)
@router.options("/groups/", include_in_schema=False)
async def engage_options() -> Response:
    return options_response()
