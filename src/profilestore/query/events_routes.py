"""HTTP routes of the event read API: thin wrappers over events_export.py and events_query.py.

`/api/2.0/export` is Mixpanel's (errors `{"error": message}`, app.py); `/api/events/query` is the service's
own JSON API (errors `{"error": Name, "detail": ...}`).  Both need the project's API secret (deps.ProjectDep)
and write nothing, so both read from READ_DATABASE_URL's replica when there is one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from profilestore.deps import ProjectDep, ReadPoolDep, SettingsDep
from profilestore.ingest.service import database
from profilestore.query.events_export import events_export_query, export_events
from profilestore.query.events_query import EventsQueryRequest, EventsQueryResponse, query_events
from profilestore.query.export import gzipped, started
from profilestore.query.params import read_params

router = APIRouter()

EXPORT_PATHS = ["/api/2.0/export", "/api/2.0/export/"]


async def export(
    request: Request, project_id: ProjectDep, settings: SettingsDep, pool: ReadPoolDep
) -> StreamingResponse:
    """Mixpanel's raw event export: `from_date`, `to_date`, `event`, `where`, `limit`, `time_in_ms`, and
    `join_profiles=true` (extension); JSONL, gzip-encoded on `Accept-Encoding: gzip`."""
    query = events_export_query(await read_params(request))
    now = time.time()

    async def body() -> AsyncIterator[bytes]:
        async with database(pool, settings) as conn:
            async for chunk in export_events(conn, project_id, query, now=now):
                yield chunk

    headers = {}
    stream = await started(body())
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        stream = gzipped(stream)
    return StreamingResponse(stream, media_type="text/plain; charset=utf-8", headers=headers)


for _path in EXPORT_PATHS:
    router.add_api_route(
        _path,
        export,
        methods=["GET", "POST"],
        summary="Mixpanel raw event export (/api/2.0/export), JSONL",
        include_in_schema=_path == EXPORT_PATHS[0],
    )


@router.post("/api/events/query", summary="Events counted (total and unique users) per group")
async def events_query(
    body: EventsQueryRequest, project_id: ProjectDep, settings: SettingsDep, pool: ReadPoolDep
) -> EventsQueryResponse:
    async with database(pool, settings) as conn:
        return await query_events(conn, project_id, body, now=time.time())
