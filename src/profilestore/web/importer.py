"""Import from CSV: the wizard over the import API's functions (imports/service.py, jobs.py), as Mixpanel's
Users page has it.

1. `/users/import`: upload a file (a plain multipart form; the file is streamed to disk and held by a `draft`
   job), and the project's recent imports.
2. `/users/import/{id}/setup`: the preview of the file (columns with sample values and inferred types), and
   the choices: user or group profiles, the identifier column, which columns to import, the property and
   type of each, the mode, a cohort, a dry run.  Submitting queues the job and starts its process.
3. `/users/import/{id}`: the job's progress (refreshed by import.js every second, or by the page itself every
   3 s without scripts), then its summary and its warnings (all of them as CSV).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from profilestore.db.connections import database
from profilestore.deps import PoolDep, SettingsDep
from profilestore.errors import BadRequest, NotFound, PayloadTooLarge, ProfilestoreError
from profilestore.imports import jobs, service
from profilestore.imports.columns import FORCED_TYPES, RESERVED
from profilestore.imports.plan import ImportOptions
from profilestore.imports.reading import Source
from profilestore.query.streaming import stream
from profilestore.web.deps import FormDep, WebDep, context
from profilestore.web.render import page

router = APIRouter(include_in_schema=False)

RESERVED_NAMES = sorted(set(RESERVED.values()))


@router.get("/users/import")
async def upload_form(request: Request, web: WebDep, pool: PoolDep, settings: SettingsDep) -> Response:
    return await _upload_page(request, web, pool, settings, None)


async def _upload_page(
    request: Request, web: Any, pool: Any, settings: Any, error: ProfilestoreError | None
) -> Response:
    async with database(pool, settings) as conn:
        recent = await jobs.recent(conn, web.project_id)
    return page(
        request,
        "import.html",
        context(web, recent=recent, limit=settings.max_import_bytes, error=error and error.message),
        status_code=error.status_code if error else 200,
    )


async def _upload_guard(request: Request, settings: SettingsDep) -> AsyncIterator[None]:
    """Before the form is read: a declared upload over the limit is refused at once.  After the request:
    its form is closed, and with it the parser's temporary file of the upload, however the request ended
    (FastAPI closes only the forms it parses itself; FormDep's may be refused by its CSRF check)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_import_bytes + 100_000:
        raise PayloadTooLarge(f"the file is over the limit of {settings.max_import_bytes} bytes")
    try:
        yield
    finally:
        await request.close()


@router.post("/users/import", dependencies=[Depends(_upload_guard)])
async def upload(
    request: Request, web: WebDep, form: FormDep, pool: PoolDep, settings: SettingsDep
) -> Response:
    """The file stored and held by a draft job; a file the import cannot read is refused here, on the
    upload page, with the reason."""
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise BadRequest("choose a CSV file to upload")
        # In threads: the copy of a large upload must not stop the server's other requests.
        path, size = await asyncio.to_thread(_store, upload, settings.max_import_bytes)
        try:
            await asyncio.to_thread(_preview, path, ImportOptions(), settings)
        except ProfilestoreError:
            os.unlink(path)
            raise
    except ProfilestoreError as exc:
        return await _upload_page(request, web, pool, settings, exc)
    async with database(pool, settings) as conn:
        job_id = await jobs.draft(conn, web.project_id, path, size)
    return RedirectResponse(f"/users/import/{job_id}/setup", status_code=303)


def _store(upload: UploadFile, limit: int) -> tuple[str, int]:
    fd, path = tempfile.mkstemp(prefix="profilestore-upload-", suffix=".csv")
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)
        size = out.tell()
    if size > limit:
        os.unlink(path)
        raise PayloadTooLarge(f"the file is over the limit of {limit} bytes")
    return path, size


async def _draft(web: Any, pool: Any, settings: Any, job_id: int) -> dict[str, Any]:
    async with database(pool, settings) as conn:
        job = await jobs.read(conn, web.project_id, job_id)
    if job is None:
        raise NotFound(f"no import {job_id} in this project")
    return job


def _preview(path: str, options: ImportOptions, settings: Any) -> dict[str, Any]:
    with Source(path) as source:
        raw = source.raw.read(settings.import_preview_bytes + 1)
    limit = settings.import_preview_bytes
    return service.preview(raw[:limit], len(raw) > limit, options, settings)


@router.get("/users/import/{job_id}/setup")
async def setup_form(
    request: Request, web: WebDep, pool: PoolDep, settings: SettingsDep, job_id: int
) -> Response:
    job = await _draft(web, pool, settings, job_id)
    if job["state"] != "draft":
        return RedirectResponse(f"/users/import/{job_id}", status_code=303)
    path = await _upload_path(pool, settings, web.project_id, job_id)
    preview = _preview(path, ImportOptions(), settings)
    return _setup_page(request, web, job_id, preview, {}, None)


def _setup_page(
    request: Request,
    web: Any,
    job_id: int,
    preview: dict[str, Any],
    chosen: dict[str, Any],
    error: str | None,
) -> Response:
    return page(
        request,
        "import_setup.html",
        context(
            web,
            job_id=job_id,
            preview=preview,
            chosen=chosen,
            error=error,
            types=FORCED_TYPES,
            reserved=RESERVED_NAMES,
        ),
        status_code=400 if error else 200,
    )


async def _upload_path(pool: Any, settings: Any, project_id: int, job_id: int) -> str:
    async with database(pool, settings) as conn:
        path = await jobs.upload_path(conn, project_id, job_id)
    if not path or not os.path.exists(path):
        raise NotFound("this upload is gone (an upload waits a day for its options); upload the file again")
    return path


def options_of(form: FormData, columns: list[dict[str, Any]]) -> ImportOptions:
    """The wizard's choices as the import's options: unchecked columns skipped, the others mapped to their
    property and type where these differ from what the import would choose by itself."""
    text = {k: str(v).strip() for k, v in form.items() if isinstance(v, str)}
    skip, maps = [], []
    for c in columns:
        i = c["index"]
        if f"use_{i}" not in text:
            skip.append(c["name"])
            continue
        prop = text.get(f"prop_{i}") or c["property"]
        kind = text.get(f"type_{i}", "")
        if prop != c["property"] or kind:
            maps.append(f"{c['name']}={prop}{':' + kind if kind else ''}")
    group = text.get("profile_type") == "group"
    try:
        return ImportOptions(
            id_column=text.get("id_column") or None,
            group_key=text.get("group_key") if group else None,
            mode=text.get("mode", "upsert"),
            map=maps,
            skip=skip,
            types="string" if text.get("types") == "string" else "infer",
            cohort=text.get("cohort") or None,
            dry_run="dry_run" in text,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "options"
        raise BadRequest(f"{where}: {first['msg']}") from None


@router.post("/users/import/{job_id}/setup")
async def start(
    request: Request, web: WebDep, form: FormDep, pool: PoolDep, settings: SettingsDep, job_id: int
) -> Response:
    job = await _draft(web, pool, settings, job_id)
    if job["state"] != "draft":
        return RedirectResponse(f"/users/import/{job_id}", status_code=303)
    path = await _upload_path(pool, settings, web.project_id, job_id)
    preview = _preview(path, ImportOptions(), settings)
    chosen = {k: v for k, v in form.items() if isinstance(v, str)}
    processes: service.Processes = request.app.state.import_processes
    try:
        options = options_of(form, preview["columns"])
        if not processes.reserve(settings.max_import_jobs):
            raise BadRequest(
                f"{settings.max_import_jobs} imports are running on this server; try again when one ends"
            )
        try:
            await service.start_job(
                processes,
                pool,
                settings,
                request.app.state.database_url,
                web.project_id,
                options,
                path,
                job["bytes_total"] or 0,
                draft=job_id,
            )
        finally:
            processes.release()
    except ProfilestoreError as exc:
        return _setup_page(request, web, job_id, preview, chosen, exc.message)
    return RedirectResponse(f"/users/import/{job_id}", status_code=303)


@router.get("/users/import/{job_id}")
async def job_page(
    request: Request, web: WebDep, pool: PoolDep, settings: SettingsDep, job_id: int
) -> Response:
    job = await _draft(web, pool, settings, job_id)
    if job["state"] == "draft":
        return RedirectResponse(f"/users/import/{job_id}/setup", status_code=303)
    return page(request, "import_job.html", context(web, job=job, share=_share(job)))


def _share(job: dict[str, Any]) -> int:
    """Percent done: by bytes of the file read (known from the start), 100 when finished."""
    if job["state"] not in ("queued", "running"):
        return 100
    total = job["bytes_total"] or 0
    return min(99, int(100 * (job["bytes_done"] or 0) / total)) if total else 0


@router.get("/users/import/{job_id}/status.json")
async def job_json(web: WebDep, pool: PoolDep, settings: SettingsDep, job_id: int) -> Response:
    job = await _draft(web, pool, settings, job_id)
    shown = {k: job[k] for k in ("state", "rows_done", "rows_total", "rows_per_second", "error")}
    return JSONResponse({**shown, "percent": _share(job), "summary": job["summary"]})


@router.get("/users/import/{job_id}/warnings.csv")
async def warnings_csv(web: WebDep, pool: PoolDep, settings: SettingsDep, job_id: int) -> Response:
    await _draft(web, pool, settings, job_id)
    return StreamingResponse(
        await stream(pool, settings, lambda conn: jobs.warnings_csv(conn, job_id)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="import-{job_id}-warnings.csv"'},
    )


@router.post("/users/import/{job_id}/discard")
async def discard(web: WebDep, form: FormDep, pool: PoolDep, settings: SettingsDep, job_id: int) -> Response:
    """Drops a draft and its file (the wizard's Cancel); a job started meanwhile is left to run."""
    async with database(pool, settings) as conn:
        path = await jobs.discard(conn, web.project_id, job_id)
    if path is None:  # not a draft (any more): its page, if it is this project's (404 otherwise)
        await _draft(web, pool, settings, job_id)
        return RedirectResponse(f"/users/import/{job_id}", status_code=303)
    with contextlib.suppress(OSError):
        os.unlink(path)
    return RedirectResponse("/users/import", status_code=303)
