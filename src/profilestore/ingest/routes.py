"""HTTP routes of ingestion: thin wrappers over service.py, answering in Mixpanel's shapes (responses.py)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Request, Response
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import select

from profilestore.db.engine import compile_query
from profilestore.db.schema import ingestion_warnings
from profilestore.deps import PoolDep, ProjectDep, SettingsDep, TokensDep
from profilestore.errors import ProfilestoreError
from profilestore.ingest.responses import Outcome, ingest_error_response, ingest_response
from profilestore.ingest.service import database, ingest_profiles
from profilestore.ingest.wire import read_wire_request
from profilestore.projects import TokenCache
from profilestore.settings import Settings

router = APIRouter()


@router.api_route("/engage", methods=["GET", "POST"], include_in_schema=False)
@router.api_route("/engage/", methods=["GET", "POST"], summary="Mixpanel /engage: profile updates")
async def engage(request: Request, settings: SettingsDep, pool: PoolDep, tokens: TokensDep) -> Response:
    return await _profile_updates(request, settings, pool, tokens, kind="profile")


@router.api_route("/groups", methods=["GET", "POST"], include_in_schema=False)
@router.api_route("/groups/", methods=["GET", "POST"], summary="Mixpanel /groups: group profile updates")
async def groups(request: Request, settings: SettingsDep, pool: PoolDep, tokens: TokensDep) -> Response:
    return await _profile_updates(request, settings, pool, tokens, kind="group")


async def _profile_updates(
    request: Request, settings: Settings, pool: AsyncConnectionPool, tokens: TokenCache, *, kind: str
) -> Response:
    now = time.time()
    params: dict[str, str] = dict(request.query_params)
    try:
        wire = await read_wire_request(request, max_body_bytes=settings.max_body_bytes)
        params = wire.params
        if wire.records is None:
            return ingest_response(params, Outcome(total=0, failures=[], body_error=wire.error))
        outcome = await ingest_profiles(
            wire.records,
            body_bytes=wire.size,
            now=now,
            pool=pool,
            tokens=tokens,
            settings=settings,
            client_ip=request.client.host if request.client else None,
            use_client_ip=params.get("ip", "1") != "0",
            locator=request.app.state.locator,
            kind=kind,
        )
    except ProfilestoreError as exc:
        return ingest_error_response(params, exc)
    return ingest_response(params, outcome)


@router.options("/engage", include_in_schema=False)
@router.options("/engage/", include_in_schema=False)
@router.options("/groups", include_in_schema=False)
@router.options("/groups/", include_in_schema=False)
async def engage_options() -> Response:
    """Plain OPTIONS (a CORS preflight proper is answered by the CORS middleware before it gets here)."""
    return Response(status_code=200, headers={"Allow": "GET, POST, OPTIONS"})


@router.get("/api/ingestion-warnings", summary="Conflicts found while applying updates")
async def list_ingestion_warnings(
    project_id: ProjectDep,
    settings: SettingsDep,
    pool: PoolDep,
    after_id: int = Query(0, ge=0, description="only warnings with a greater id (paging)"),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, object]:
    w = ingestion_warnings.c
    stmt = (
        select(w.id, w.kind, w.entity, w.operation, w.property, w.reason, w.created_at)
        .where(w.project_id == project_id, w.id > after_id)
        .order_by(w.id)
        .limit(limit)
    )
    sql, params = compile_query(stmt)
    async with database(pool, settings) as conn:
        rows = await (await conn.execute(sql, params)).fetchall()
    results = [
        {
            "id": row["id"],
            "kind": row["kind"],
            "distinct_id": row["entity"],
            "operation": row["operation"],
            "property": row["property"],
            "reason": row["reason"],
            "time": row["created_at"].isoformat(),
        }
        for row in rows
    ]
    return {"results": results, "next_after_id": results[-1]["id"] if results else after_id}
