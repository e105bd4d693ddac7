"""HTTP routes of the profile read API: thin wrappers over engage.py and export.py.

Errors on the Mixpanel-compatible paths (`/api/2.0/...`, `/api/query/...`) answer `{"error": message}` as
docs/query.md prescribes (app.py renders them, in one place).
"""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from profilestore.deps import PoolDep, ProjectDep, ReadPoolDep, SettingsDep
from profilestore.query.params import read_params, where_param
from profilestore.query.profiles.engage import cohort_param, engage_query, query_profiles
from profilestore.query.profiles.export import ExportQuery, export_lines, parse_columns
from profilestore.query.streaming import accept_gzip, gzipped, stream
from profilestore.routing import add_routes

router = APIRouter()

ENGAGE_PATHS = ["/api/2.0/engage", "/api/2.0/engage/", "/api/query/engage", "/api/query/engage/"]


async def engage(request: Request, project_id: ProjectDep, settings: SettingsDep, pool: PoolDep) -> Response:
    """Mixpanel's profile query: `where`, `distinct_ids`, `output_properties`, paged with `session_id`."""
    query = engage_query(await read_params(request))
    body = await query_profiles(pool, project_id, query, now=time.time(), settings=settings)
    return Response(body, media_type="application/json")


add_routes(router, ENGAGE_PATHS, engage, summary="Mixpanel profile query (/api/2.0/engage)")


@router.get("/api/profiles/export", summary="Every matching profile as CSV or JSONL, streamed")
async def export(
    request: Request,
    project_id: ProjectDep,
    settings: SettingsDep,
    read_pool: ReadPoolDep,
    format: Literal["csv", "jsonl"] = Query("csv", description="csv or jsonl"),
    where: str | None = Query(
        None, description="an expression over profile properties (docs/expressions.md)"
    ),
    columns: str | None = Query(None, description="properties to export, comma-separated (default: all)"),
    filter_by_cohort: str | None = Query(None, description='{"id": N} or {"raw_cohort": {...}}'),
    include_all_users: bool = Query(
        True, description="with filter_by_cohort: also members with events but no profile (empty cells)"
    ),
    data_group_id: str | None = Query(None, description="export group profiles of this group key"),
    gzip: bool = Query(False, description="a .gz file (also sent gzip-encoded on Accept-Encoding: gzip)"),
    csv_formula_guard: bool = Query(
        True, description="CSV: a ' before string cells starting with = + - @ (a spreadsheet formula)"
    ),
) -> StreamingResponse:
    now = time.time()
    # Resolved here so a malformed value is a 400 naming the parameter; a cohort that cannot be compiled
    # fails in export_lines before the first byte (started()), with its own status.
    cohort, _ = cohort_param({"filter_by_cohort": filter_by_cohort})
    query = ExportQuery(
        format=format,
        where=where_param("where", where),
        columns=parse_columns(columns),
        group_key=data_group_id,
        cohort=cohort,
        all_users=include_all_users and cohort is not None,
        formula_guard=csv_formula_guard,
    )

    media_type = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    filename = f"profiles.{format}"
    chunks = await stream(read_pool, settings, lambda conn: export_lines(conn, project_id, query, now=now))
    if gzip:
        media_type, filename, chunks = "application/gzip", filename + ".gz", gzipped(chunks)
        headers: dict[str, str] = {}
    else:
        chunks, headers = accept_gzip(request, chunks)
    headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return StreamingResponse(chunks, media_type=media_type, headers=headers)
