"""Import jobs: every import, from the command or the HTTP API, is a row of `import_jobs` with its progress,
its summary and its row-level warnings (`import_warnings`), so that its state can be asked for from anywhere.

The command runs its import itself (`execute`).  The API stores the upload in a file, queues a job, and
starts `python -m profilestore.imports ID` as a process of its own (`launch`), so that an import's CPU and
memory never slow the server's requests; that process marks its job done, failed, or interrupted (on
SIGTERM, between two chunks).  A job whose process died without a word shows as `interrupted` once its
heartbeat is stale, and after an hour the sweep (`sweep`) says so in its row and deletes its upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from profilestore.imports import sql
from profilestore.imports.plan import ImportOptions
from profilestore.imports.reading import FileError
from profilestore.imports.run import Hooks, Importer, Interrupted, Summary, connect
from profilestore.settings import Settings

MAX_SHOWN_WARNINGS = 1000


def _job_params(
    project_id: int, state: str, source: str, options: ImportOptions, path: str | None, size: int | None
) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "state": state,
        "source": source,
        "options": Jsonb(options.model_dump()),
        "upload_path": path,
        "bytes_total": size,
    }


def execute(
    conn: psycopg.Connection[Any],
    settings: Settings,
    project_id: int,
    options: ImportOptions,
    path: str,
    hooks: Hooks | None = None,
    *,
    source: str = "cli",
) -> tuple[int, Summary]:
    """Runs an import now, as a new job: (job id, summary).  FileError: nothing could be imported."""
    row = conn.execute(
        sql.CREATE_JOB, _job_params(project_id, "running", source, options, None, os.path.getsize(path))
    ).fetchone()
    assert row is not None
    job_id = int(row[0])
    conn.execute(sql.START_JOB, (job_id,))
    return job_id, _run(conn, settings, job_id, project_id, options, path, hooks)


def _run(
    conn: psycopg.Connection[Any],
    settings: Settings,
    job_id: int,
    project_id: int,
    options: ImportOptions,
    path: str,
    hooks: Hooks | None,
) -> Summary:
    importer = Importer(conn, settings, project_id, job_id, options)
    state, error = "failed", None
    try:
        summary = importer.run(path, hooks)
        state = "done"
        return summary
    except FileError as exc:
        error = exc.message
        raise
    except (Interrupted, KeyboardInterrupt):
        state, error = "interrupted", "stopped before the end; running the import again is harmless"
        raise
    except Exception as exc:  # a failed job says so (the traceback goes to the process's standard error)
        error = f"the import stopped on an unexpected error ({type(exc).__name__}); the server's log has it"
        raise
    finally:
        with contextlib.suppress(psycopg.Error):
            conn.execute(
                sql.FINISH_JOB,
                {
                    "id": job_id,
                    "state": state,
                    "error": error,
                    "summary": Jsonb(importer.summary.as_json()),
                    "rows_done": importer.summary.rows,
                    "rows_total": importer.summary.rows if state == "done" else importer.rows_total,
                },
            )


def run_queued(url: str, settings: Settings, job_id: int) -> str:
    """The job process: runs a queued API job to its end; returns its final state.  SIGTERM stops it between
    two chunks (the job is then `interrupted`)."""
    stop = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    with connect(url) as conn:
        row = conn.execute(
            "SELECT project_id, options, upload_path FROM import_jobs WHERE id = %s AND state = 'queued'",
            (job_id,),
        ).fetchone()
        if row is None:
            return "missing"
        project_id, options, path = int(row[0]), ImportOptions.model_validate(row[1]), row[2]
        conn.execute(sql.START_JOB, (job_id,))
        try:
            _run(conn, settings, job_id, project_id, options, path, Hooks(should_stop=lambda: stop))
            return "done"
        except FileError:
            return "failed"
        except Interrupted:
            return "interrupted"
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)


# ---- the API's side (async) --------------------------------------------------------------------------------


async def submit(
    conn: AsyncConnection[Any], project_id: int, options: ImportOptions, path: str, size: int
) -> int:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql.CREATE_JOB, _job_params(project_id, "queued", "api", options, path, size))
        row = await cur.fetchone()
    assert row is not None
    return int(row["id"])


async def draft(conn: AsyncConnection[Any], project_id: int, path: str, size: int) -> int:
    """A job that holds an upload until its options are chosen (the web page's wizard)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        params = _job_params(project_id, "draft", "web", ImportOptions(), path, size)
        await cur.execute(sql.CREATE_JOB, params)
        row = await cur.fetchone()
    assert row is not None
    return int(row["id"])


async def queue(conn: AsyncConnection[Any], project_id: int, job_id: int, options: ImportOptions) -> bool:
    """A draft queued with its options; False when it is not a draft of this project (any more)."""
    params = {"id": job_id, "project_id": project_id, "options": Jsonb(options.model_dump())}
    cur = await conn.execute(sql.QUEUE_DRAFT, params)
    return cur.rowcount == 1


async def upload_path(conn: AsyncConnection[Any], project_id: int, job_id: int) -> str | None:
    cur = await conn.execute(sql.UPLOAD_PATH, (job_id, project_id))
    row = await cur.fetchone()
    return None if row is None else (row["upload_path"] if isinstance(row, dict) else row[0])


async def discard(conn: AsyncConnection[Any], project_id: int, job_id: int) -> str | None:
    """Drops a draft; returns its upload's path (the caller deletes the file)."""
    cur = await conn.execute(sql.DISCARD_DRAFT, (job_id, project_id))
    row = await cur.fetchone()
    return None if row is None else (row["upload_path"] if isinstance(row, dict) else row[0])


async def recent(conn: AsyncConnection[Any], project_id: int, limit: int = 20) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        return await (await cur.execute(sql.RECENT_JOBS, (project_id, limit))).fetchall()


async def fail(conn: AsyncConnection[Any], job_id: int, error: str) -> None:
    await conn.execute(
        sql.FINISH_JOB,
        {
            "id": job_id,
            "state": "failed",
            "error": error,
            "summary": Jsonb({}),
            "rows_done": 0,
            "rows_total": None,
        },
    )


async def read(conn: AsyncConnection[Any], project_id: int, job_id: int) -> dict[str, Any] | None:
    """The job as the API shows it (None: no such job in this project), with its first warnings."""
    async with conn.cursor(row_factory=dict_row) as cur:
        job = await (await cur.execute(sql.READ_JOB, (job_id, project_id))).fetchone()
        if job is None:
            return None
        warnings = await (await cur.execute(sql.READ_WARNINGS, (job_id, MAX_SHOWN_WARNINGS))).fetchall()
        total = await (await cur.execute(sql.COUNT_WARNINGS, (job_id,))).fetchone()
    assert total is not None
    summary = job["summary"] or {}
    return {
        "id": job["id"],
        "state": job["state"],
        "source": job["source"],
        "options": job["options"],
        "rows_done": job["rows_done"],
        "rows_total": job["rows_total"],
        "bytes_done": job["bytes_done"],
        "bytes_total": job["bytes_total"],
        "rows_per_second": summary.get("rows_per_second"),
        "created_at": job["created_at"],
        "started_at": job["started_at"],
        "finished_at": job["finished_at"],
        "error": job["error"],
        "summary": summary,
        "warnings_total": total["n"],
        "warnings": warnings,
    }


async def warnings_csv(conn: AsyncConnection[Any], job_id: int) -> AsyncIterator[bytes]:
    """Every warning of a job as CSV (line, kind, column, message), streamed from a server-side cursor."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["line", "kind", "column", "message"])
    async with conn.cursor(
        name="import_warnings_csv", row_factory=tuple_row
    ) as cur:  # in stream()'s transaction
        await cur.execute(
            sql.ALL_WARNINGS,
            (job_id,),
        )
        while rows := await cur.fetchmany(5000):
            writer.writerows(rows)
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    if out.tell():
        yield out.getvalue().encode()


async def launch(database_url: str, job_id: int) -> asyncio.subprocess.Process:
    """Starts the process that runs a queued job (`python -m profilestore.imports ID`, __main__.py)."""
    env = {**os.environ, "DATABASE_URL": database_url}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "profilestore.imports",
        str(job_id),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=None,  # the server's own: an unexpected error's traceback lands in its log
    )


def sweep(conn: psycopg.Connection[Any], retention_days: float) -> int:
    """Jobs whose process died unseen (no heartbeat for an hour) become `interrupted` and lose their upload
    file; finished jobs older than `retention_days` go, with their warnings.  Returns the files deleted."""
    rows = conn.execute(sql.EXPIRE_STALE).fetchall() + conn.execute(sql.EXPIRE_DRAFTS).fetchall()
    for (path,) in rows:
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)
    conn.execute(sql.SWEEP_JOBS, {"days": retention_days})
    return len(rows)
