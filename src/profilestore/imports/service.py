"""The HTTP API's side of imports, as plain functions: options from a query string, an upload streamed to a
file, the preview of a file's head, and starting a job (jobs.py runs it in a process of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError
from starlette.datastructures import QueryParams

from profilestore.db.connections import database
from profilestore.errors import BadRequest, Conflict, PayloadTooLarge
from profilestore.imports import jobs
from profilestore.imports.columns import RESERVED, Inference, property_for
from profilestore.imports.plan import ImportOptions, PlanError, make_plan
from profilestore.imports.reading import (
    GZIP_MAGIC,
    FileError,
    Lines,
    Row,
    check_head,
    rows,
    set_field_limit,
    sniff,
    text_stream,
)
from profilestore.imports.run import open_rows
from profilestore.settings import Settings

SAMPLES = 20
RESERVED_PROPERTIES = frozenset(RESERVED.values())
_LISTS = ("map", "skip")
_BOOLEANS = ("header", "dry_run")


def options_from_query(params: QueryParams) -> ImportOptions:
    """ImportOptions from a query string: `map` and `skip` repeat, `columns` is comma-separated."""
    known = set(ImportOptions.model_fields) | {"project_id"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise BadRequest(f"{unknown[0]}: not an import option (the options: {', '.join(sorted(known))})")
    raw: dict[str, Any] = {}
    for name in ImportOptions.model_fields:
        if name in _LISTS:
            if name in params:
                raw[name] = params.getlist(name)
        elif name in params:
            raw[name] = params[name]
    if "columns" in raw:
        raw["columns"] = [c.strip() for c in raw["columns"].split(",")]
    for name in _BOOLEANS:
        if name in raw:
            raw[name] = _boolean(name, raw[name])
    try:
        return ImportOptions.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "options"
        raise BadRequest(f"{where}: {first['msg']}") from None


def _boolean(name: str, value: str) -> bool:
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise BadRequest(f"{name}: must be true or false")


async def receive_upload(body: AsyncIterator[bytes], limit: int) -> tuple[str, int]:
    """The request body written to a temporary file (path, bytes); a 413 past `limit` bytes."""
    fd, path = tempfile.mkstemp(prefix="profilestore-upload-", suffix=".csv")
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in body:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the upload is over the limit of {limit} bytes")
                out.write(chunk)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path, size


async def read_head(body: AsyncIterator[bytes], limit: int) -> bytes:
    """At most the first `limit` bytes of the body (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in body:
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def check_plan(path: str, options: ImportOptions, settings: Settings) -> None:
    """Refuses (400) a file whose header does not fit the options, before a job is queued."""
    set_field_limit(settings.max_import_line_bytes)
    try:
        source, _, headers = open_rows(path, options, settings)
        source.close()
        make_plan(headers, options, settings)
    except (FileError, PlanError) as exc:
        raise BadRequest(str(exc)) from None


def preview(head: bytes, truncated: bool, options: ImportOptions, settings: Settings) -> dict[str, Any]:
    """What the wizard shows before an import: delimiter, header, columns with samples and types, mapping."""
    set_field_limit(settings.max_import_line_bytes)
    if head.startswith(GZIP_MAGIC):
        head, truncated = _gunzip_head(head, truncated, settings.import_preview_bytes)
    try:
        check_head(head)
    except FileError as exc:
        raise BadRequest(exc.message) from None
    delimiter, looks_like_header = sniff(head, options.encoding)
    delimiter = options.delimiter or delimiter
    items = [
        r for r in rows(Lines(text_stream(head), options.encoding, settings.max_import_line_bytes), delimiter)
    ]
    if truncated and items:
        items.pop()  # the last row may be cut short
    sampled = [r for r in items if isinstance(r, Row)]
    if not sampled:
        raise BadRequest("no row of the file could be read")
    if "header" in options.model_fields_set:
        header = options.header
    else:
        # csv.Sniffer votes only on columns whose values share a type or a length, and says "no header" when
        # none does (a file of text columns); a first row naming a reserved property is a header too.
        header = looks_like_header or any(property_for(c) in RESERVED_PROPERTIES for c in sampled[0].cells)
    # The columns are the header's (or the given names), as in the import; without either, the width of the
    # rows most often seen.  A row of another width is a problem here, as it is a skipped row there.
    if header:
        names = list(options.columns or sampled[0].cells)
        sampled = sampled[1:]
    else:
        width = Counter(len(r.cells) for r in sampled).most_common(1)[0][0]
        names = options.columns or [f"column {i + 1}" for i in range(width)]
    ragged = [r for r in sampled if len(r.cells) != len(names)]
    sampled = [r for r in sampled if len(r.cells) == len(names)]
    inference = Inference(len(names), settings.max_value_depth, settings.max_import_cell_bytes)
    inference.add_rows([r.cells for r in sampled])
    columns = []
    for i, name in enumerate(names):
        values = [r.cells[i] for r in sampled if i < len(r.cells) and r.cells[i]][:SAMPLES]
        columns.append(
            {
                "index": i,
                "name": name,
                "samples": values,
                "type": inference.type_of(i),
                "property": property_for(name),
            }
        )
    identifier: str | None = None
    try:
        plan = make_plan(names, options.model_copy(update={"header": header, "columns": names}), settings)
        identifier = plan.headers[plan.id_index] if plan.id_index is not None else None
        rule = plan.id_rule
    except PlanError as exc:
        rule = str(exc)
    return {
        "delimiter": delimiter,
        "header": header,
        "encoding": options.encoding,
        "rows_sampled": len(sampled),
        "columns": columns,
        "identifier_column": identifier,
        "identifier": rule,
        "suggested_mapping": {c["name"]: c["property"] for c in columns},
        "problems": [
            {"line": p.line, "kind": p.kind, "message": p.message} for p in items if not isinstance(p, Row)
        ]
        + [
            {
                "line": r.line,
                "kind": "ragged",
                "message": f"line {r.line}: {len(r.cells)} cells where the header has {len(names)}; skipped",
            }
            for r in ragged
        ],
    }


def _gunzip_head(head: bytes, truncated: bool, limit: int) -> tuple[bytes, bool]:
    """The first `limit` bytes that the head of a gzip file (maybe cut short) decompresses to, and whether
    that is less than the whole file."""
    out: list[bytes] = []
    size = 0
    data = head
    try:
        while data and size <= limit:
            gz = zlib.decompressobj(wbits=31)
            piece = gz.decompress(data, limit + 1 - size)
            out.append(piece)
            size += len(piece)
            if not gz.eof:
                # Cut short (the head of a longer upload), or stopped at the limit.
                truncated = truncated or size > limit
                if not truncated:
                    raise BadRequest("the file cannot be decompressed: the gzip stream ends too early")
                break
            data = gz.unused_data  # a gzip file may hold several members, one after the other
    except zlib.error as exc:
        raise BadRequest(f"the file cannot be decompressed: {exc}") from None
    text = b"".join(out)
    return text[:limit], truncated or size > limit


async def start_job(
    processes: Processes,
    pool: AsyncConnectionPool,
    settings: Settings,
    database_url: str,
    project_id: int,
    options: ImportOptions,
    path: str,
    size: int,
    *,
    draft: int | None = None,
) -> int:
    """The file checked against the options (400), its job queued (a new one, or the wizard's draft), and its
    process started.  The caller holds a slot of `processes` (reserve) and releases it after."""
    await asyncio.to_thread(check_plan, path, options, settings)
    async with database(pool, settings) as conn:
        if draft is None:
            job_id = await jobs.submit(conn, project_id, options, path, size)
        elif await jobs.queue(conn, project_id, draft, options):
            job_id = draft
        else:
            raise Conflict(f"import {draft} was started already")
    try:
        processes.add(job_id, await jobs.launch(database_url, job_id))
    except OSError as exc:
        async with database(pool, settings) as conn:
            await jobs.fail(conn, job_id, f"the import process could not start: {exc}")
    return job_id


class Processes:
    """The job processes this server started, so that it can bound them and stop them when it stops."""

    def __init__(self) -> None:
        self.running: dict[int, asyncio.subprocess.Process] = {}
        self.waiters: set[asyncio.Task[None]] = set()
        self.reserved = 0  # uploads under way: each becomes a process (or nothing) when it ends

    def reserve(self, limit: int) -> bool:
        """A slot for an upload about to be received, if fewer than `limit` are running or being received."""
        if len(self.running) + self.reserved >= limit:
            return False
        self.reserved += 1
        return True

    def release(self) -> None:
        """The upload's slot, once its process runs (and holds a slot of its own) or it was refused."""
        self.reserved -= 1

    def add(self, job_id: int, process: asyncio.subprocess.Process) -> None:
        self.running[job_id] = process

        async def reap() -> None:
            await process.wait()
            self.running.pop(job_id, None)

        task = asyncio.create_task(reap())
        self.waiters.add(task)
        task.add_done_callback(self.waiters.discard)

    async def stop(self, timeout: float) -> None:
        """SIGTERM to every job process (each stops after its chunk in flight); SIGKILL after `timeout`."""
        for process in list(self.running.values()):
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in list(self.running.values()):
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
