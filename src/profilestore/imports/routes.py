"""HTTP routes of CSV imports (docs/import.md): preview an upload, start an import job, follow it.

Uploads are the request body itself (the CSV file's bytes, gzip-compressed or not) with the options in the
query string, as the command's flags: `?mode=create&id_column=user_id&map=Plan=plan:string&skip=notes`.
security.ApiGuard checks the API secret before any of the body is read and leaves these bodies unread for
the route, which streams them to a file (never into memory).  An answer given before the body was read to
its end (a refusal, a preview of the file's head) closes the connection, so the rest is not read either.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from profilestore.db.connections import database
from profilestore.deps import ConnDep, PoolDep, ProjectDep, SettingsDep
from profilestore.errors import NotFound, PayloadTooLarge, ProfilestoreError, TooManyRequests
from profilestore.imports import jobs, service
from profilestore.query.streaming import stream

router = APIRouter(tags=["imports"])
CLOSE = {"Connection": "close"}


def _unread(exc: ProfilestoreError) -> ProfilestoreError:
    """`exc`, answered with the connection closed: the rest of the body is not read."""
    exc.headers = {**exc.headers, **CLOSE}
    return exc


@router.post(
    "/api/profiles/import/preview", summary="Delimiter, header, columns with samples, types, mapping"
)
async def preview(
    request: Request, response: Response, settings: SettingsDep, project_id: ProjectDep
) -> dict[str, object]:
    try:
        options = service.options_from_query(request.query_params)
    except ProfilestoreError as exc:
        raise _unread(exc) from None
    limit = settings.import_preview_bytes
    head = await service.read_head(request.stream(), limit + 1)
    truncated = len(head) > limit
    try:
        result = await asyncio.to_thread(service.preview, head[:limit], truncated, options, settings)
    except ProfilestoreError as exc:
        raise (_unread(exc) if truncated else exc) from None
    if truncated:
        response.headers.update(CLOSE)
    return result


@router.post("/api/profiles/import", status_code=202, summary="Start an import job from a CSV upload")
async def start(
    request: Request, settings: SettingsDep, project_id: ProjectDep, pool: PoolDep
) -> dict[str, object]:
    """The upload is streamed to a file first; only then is a database connection taken.  The job's slot
    is held from before the upload (a 429 then, not after the upload) until its process ends."""
    processes: service.Processes = request.app.state.import_processes
    try:
        options = service.options_from_query(request.query_params)
        declared = request.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > settings.max_import_bytes:
            raise PayloadTooLarge(f"the upload is over the limit of {settings.max_import_bytes} bytes")
        if not processes.reserve(settings.max_import_jobs):
            raise TooManyRequests(
                f"{settings.max_import_jobs} imports are running on this server; try again when one ends",
                retry_after=settings.retry_after_seconds,
            )
    except ProfilestoreError as exc:
        raise _unread(exc) from None
    try:
        try:
            path, size = await service.receive_upload(request.stream(), settings.max_import_bytes)
        except PayloadTooLarge as exc:
            raise _unread(exc) from None
        try:
            job_id = await service.start_job(
                processes, pool, settings, request.app.state.database_url, project_id, options, path, size
            )
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
    finally:
        processes.release()  # the running process (if any) holds the slot now
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
