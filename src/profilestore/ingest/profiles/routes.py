"""HTTP routes of profile updates, `/engage` and `/groups`: thin wrappers over service.py through the
ingestion pipeline's request handling (decode, run, answer in Mixpanel's shapes)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from profilestore.db.connections import connector
from profilestore.deps import PoolDep, SettingsDep, TokensDep
from profilestore.ingest.pipeline import handle
from profilestore.ingest.profiles.service import ingest_profiles
from profilestore.ingest.responses import Outcome, options_response

router = APIRouter()


@router.api_route("/engage", methods=["GET", "POST"], include_in_schema=False)
@router.api_route("/engage/", methods=["GET", "POST"], summary="Mixpanel /engage: profile updates")
async def engage(request: Request, settings: SettingsDep, pool: PoolDep, tokens: TokensDep) -> Response:
    async def run(records: list[Any], size: int, now: float, _: int | None) -> Outcome:
        connect = connector(pool, settings)
        return await ingest_profiles(
            records, body_bytes=size, now=now, tokens=tokens, connect=connect, settings=settings
        )

    return await handle(request, settings, run)


@router.api_route("/groups", methods=["GET", "POST"], include_in_schema=False)
@router.api_route("/groups/", methods=["GET", "POST"], summary="Mixpanel /groups: group profile updates")
async def groups(request: Request, settings: SettingsDep, pool: PoolDep, tokens: TokensDep) -> Response:
    async def run(records: list[Any], size: int, now: float, _: int | None) -> Outcome:
        connect = connector(pool, settings)
        return await ingest_profiles(
            records, body_bytes=size, now=now, tokens=tokens, connect=connect, settings=settings, kind="group"
        )

    return await handle(request, settings, run)


@router.options("/engage", include_in_schema=False)
@router.options("/engage/", include_in_schema=False)
@router.options("/groups", include_in_schema=False)
@router.options("/groups/", include_in_schema=False)
async def engage_options() -> Response:
    return options_response()
