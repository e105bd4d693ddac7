"""HTTP routes of CSV imports (docs/import.md): preview an upload, start an import job, follow it.

Uploads are the request body itself (the CSV file's bytes, gzip-compressed or not) with the options in the
query string, as the command's flags: `?mode=create&id_column=user_id&map=Plan=plan:string&skip=notes`.
security.ApiGuard checks the API secret before any of the body is read and leaves these bodies unread for
the route, which streams them to a file (never into memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from profilestore.db.connections import database
from profilestore.deps import ConnDep, PoolDep, ProjectDep, SettingsDep
from profilestore.errors import NotFound, TooManyRequests
from profilestore.imports import jobs, service
from profilestore.query.streaming import stream

router = APIRouter(tags=["imports"])


@router.post(
    "/api/profiles/import/preview", summary="Delimiter, header, columns with samples, types, mapping"
)
async def preview(request: Request, settings: SettingsDep, project_id: ProjectDep) -> dict[str, object]:
    options = service.options_from_query(request.query_params)
    limit = settings.import_preview_bytes
    head = await service.read_head(request.stream(), limit + 1)
    return await asyncio.to_thread(service.preview, head[:limit], len(head) > limit, options, settings)


@router.post("/api/profiles/import", status_code=202, summary="Start an import job from a CSV upload")
async def start(
    request: Request, settings: SettingsDep, project_id: ProjectDep, pool: PoolDep
) -> dict[str, object]:
    """The upload is streamed to a file first; only then is a database connection taken."""
    options = service.options_from_query(request.query_params)
    processes: service.Processes = request.app.state.import_processes
    if len(processes.running) >= settings.max_import_jobs:
        raise TooManyRequests(
            f"{settings.max_import_jobs} imports are running on this server; try again when one ends",
            retry_after=settings.retry_after_seconds,
        )
    path, size = await service.receive_upload(request.stream(), settings.max_import_bytes)
    try:
        await asyncio.to_thread(service.check_plan, path, options, settings)
        async with database(pool, settings) as conn:
            job_id = await jobs.submit(conn, project_id, options, path, size)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    try:
        processes.add(job_id, await jobs.launch(request.app.state.database_url, job_id))
    except OSError as exc:
        async with database(pool, settings) as conn:
            await jobs.fail(conn, job_id, f"the import process could not start: {exc}")
    url = f"/api/profiles/import/{job_id}"
    return {"id": job_id, "state": "queued", "status_url": url, "warnings_url": f"{url}/warnings.csv"}


@router.get(
    "/api/profiles/import/{job_id}", summary="An import's state, progress, summary and first warnings"
)
async def status(job_id: int, project_id: ProjectDep, conn: ConnDep) -> dict[str, object]:
    job = await jobs.read(conn, project_id, job_id)
    if job is None:
        raise NotFound(f"no import {job_id} in this project")
    return job


@router.get("/api/profiles/import/{job_id}/warnings.csv", summary="Every warning of an import, as CSV")
async def warnings_csv(
    job_id: int, project_id: ProjectDep, settings: SettingsDep, pool: PoolDep
) -> StreamingResponse:
    async with database(pool, settings) as conn:
        if await jobs.read(conn, project_id, job_id) is None:
            raise NotFound(f"no import {job_id} in this project")
    return StreamingResponse(
        await stream(pool, settings, lambda conn: jobs.warnings_csv(conn, job_id)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="import-{job_id}-warnings.csv"'},
    )
