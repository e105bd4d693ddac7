"""HTTP routes of the event read API: thin wrappers over export.py and query.py.

`/api/2.0/export` is Mixpanel's (errors `{"error": message}`, app.py); `/api/events/query` is the service's
own JSON API (errors `{"error": Name, "detail": ...}`).  Both need the project's API secret (deps.ProjectDep)
and write nothing, so both read from READ_DATABASE_URL's replica when there is one.  The export's connection
is taken inside its stream, so it lives as long as the response does.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from profilestore.deps import ProjectDep, ReadConnDep, ReadPoolDep, SettingsDep
from profilestore.query.events.export import events_export_query, export_events
from profilestore.query.events.query import EventsQueryRequest, EventsQueryResponse, query_events
from profilestore.query.params import read_params
from profilestore.query.streaming import accept_gzip, stream
from profilestore.routing import add_routes

router = APIRouter()

EXPORT_PATHS = ["/api/2.0/export", "/api/2.0/export/"]


async def export(
    request: Request, project_id: ProjectDep, settings: SettingsDep, pool: ReadPoolDep
) -> StreamingResponse:
    """Mixpanel's raw event export: `from_date`, `to_date`, `event`, `where`, `limit`, `time_in_ms`, and
    `join_profiles=true` (extension); JSONL, gzip-encoded on `Accept-Encoding: gzip`."""
    query = events_export_query(await read_params(request))
    now = time.time()

    chunks = await stream(pool, settings, lambda conn: export_events(conn, project_id, query, now=now))
    chunks, headers = accept_gzip(request, chunks)
    return StreamingResponse(chunks, media_type="text/plain; charset=utf-8", headers=headers)


add_routes(router, EXPORT_PATHS, export, summary="Mixpanel raw event export (/api/2.0/export), JSONL")


@router.post("/api/events/query", summary="Events counted (total and unique users) per group")
async def events_query(
    body: EventsQueryRequest,
    project_id: ProjectDep,
    conn: ReadConnDep,
    pool: ReadPoolDep,
    settings: SettingsDep,
) -> EventsQueryResponse:
    return await query_events(conn, project_id, body, now=time.time(), settings=settings, pool=pool)
