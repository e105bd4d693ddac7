"""Helpers of the CSV import tests (core and `profilestore import-csv`): running an import in this process or
as the command, and reading back what it left: profiles with their jsonb types, the job's summary, its
warnings."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from profilestore.imports import jobs
from profilestore.imports.plan import ImportOptions
from profilestore.imports.run import connect
from support import make_settings

DB = psycopg.Connection[dict[str, Any]]
Project = dict[str, Any]


@dataclass
class Ran:
    """What `profilestore import-csv` did: exit status, stdout, stderr."""

    rc: int
    out: str
    err: str


def write(folder: Path, name: str, data: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def run_import(
    database_url: str,
    project: Project,
    path: Path | str,
    settings: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[int, dict[str, Any]]:
    """An import run here (jobs.execute, as the command runs it): (job id, summary as stored)."""
    with connect(database_url) as conn:
        job_id, summary = jobs.execute(
            conn, make_settings(**(settings or {})), project["id"], ImportOptions(**options), str(path)
        )
    return job_id, summary.as_json()


def _environ(database_url: str, env: dict[str, str] | None) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PROFILESTORE_")}
    environ.update({"DATABASE_URL": database_url, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})})
    return environ


def cli(
    database_url: str,
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
) -> Ran:
    """`python -m profilestore import-csv ARGS` in a process of its own, against `database_url`."""
    return cli_many(database_url, [list(args)], stdin=stdin, env=env)[0]


def cli_many(
    database_url: str,
    commands: list[list[str]],
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    urls: list[str] | None = None,
) -> list[Ran]:
    """Several `import-csv` commands at once, each in its own process (one takes ~2 s to start, mostly Python
    importing the app), against `database_url` or, command by command, `urls`: their results in order.
    Never a traceback."""
    running = [
        subprocess.Popen(
            [sys.executable, "-m", "profilestore", "import-csv", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_environ(urls[i] if urls else database_url, env),
        )
        for i, args in enumerate(commands)
    ]
    results = []
    for process in running:
        out, err = process.communicate(stdin or b"", timeout=300)  # a hang, not a slow machine
        ran = Ran(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
        assert "Traceback" not in ran.err and "Traceback" not in ran.out, ran.err
        results.append(ran)
    return results


def last_job(db: DB, project: Project) -> dict[str, Any]:
    """The project's newest import job: id, state, error, summary."""
    row = db.execute(
        "SELECT id, state, source, error, summary FROM import_jobs WHERE project_id = %s"
        " ORDER BY id DESC LIMIT 1",
        (project["id"],),
    ).fetchone()
    assert row is not None, "no import job"
    return row


def job_count(db: DB, project: Project) -> int:
    row = db.execute(
        "SELECT count(*) AS n FROM import_jobs WHERE project_id = %s", (project["id"],)
    ).fetchone()
    assert row is not None
    return int(row["n"])


def warnings_of(db: DB, job_id: int) -> list[tuple[int, str, str | None]]:
    """(line, kind, column) of every warning of a job, in line order."""
    rows = db.execute(
        "SELECT line, kind, column_name FROM import_warnings WHERE job_id = %s"
        " ORDER BY line, kind, column_name",
        (job_id,),
    ).fetchall()
    return [(r["line"], r["kind"], r["column_name"]) for r in rows]


def messages_of(db: DB, job_id: int) -> list[str]:
    rows = db.execute(
        "SELECT message FROM import_warnings WHERE job_id = %s ORDER BY line, kind", (job_id,)
    ).fetchall()
    return [r["message"] for r in rows]


def props(db: DB, project: Project) -> dict[str, dict[str, Any]]:
    """distinct_id -> properties of a project's user profiles."""
    rows = db.execute(
        "SELECT distinct_id, properties FROM profiles WHERE project_id = %s", (project["id"],)
    ).fetchall()
    return {r["distinct_id"]: r["properties"] for r in rows}


def group_props(db: DB, project: Project) -> dict[tuple[str, str], dict[str, Any]]:
    rows = db.execute(
        "SELECT group_key, group_id, properties FROM group_profiles WHERE project_id = %s", (project["id"],)
    ).fetchall()
    return {(r["group_key"], r["group_id"]): r["properties"] for r in rows}


def typed(db: DB, project: Project, distinct_id: str) -> dict[str, tuple[str, str]]:
    """property -> (jsonb_typeof, the value's JSON text as Postgres stores it) of one profile."""
    rows = db.execute(
        "SELECT e.key, jsonb_typeof(e.value) AS t, e.value::text AS v"
        " FROM profiles AS p, jsonb_each(p.properties) AS e WHERE p.project_id = %s AND p.distinct_id = %s",
        (project["id"], distinct_id),
    ).fetchall()
    return {r["key"]: (r["t"], r["v"]) for r in rows}


def stored_state(db: DB, project: Project) -> dict[str, tuple[Any, ...]]:
    """Everything an import could change on a project's profiles, per distinct_id."""
    rows = db.execute(
        "SELECT distinct_id, properties, prop_times, max_time, created_at, updated_at, last_seen"
        " FROM profiles WHERE project_id = %s",
        (project["id"],),
    ).fetchall()
    return {r["distinct_id"]: tuple(r.values())[1:] for r in rows}


def counts(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary's outcome counts (what a test states exactly)."""
    keys = ("rows", "created", "updated", "unchanged", "skipped", "skipped_by_reason", "warnings_by_kind")
    return {k: summary[k] for k in keys}


def outcome(
    rows: int,
    created: int = 0,
    updated: int = 0,
    unchanged: int = 0,
    skipped: dict[str, int] | None = None,
    warnings: dict[str, int] | None = None,
) -> dict[str, Any]:
    skipped = skipped or {}
    return {
        "rows": rows,
        "created": created,
        "updated": updated,
        "unchanged": unchanged,
        "skipped": sum(skipped.values()),
        "skipped_by_reason": dict(sorted(skipped.items())),
        "warnings_by_kind": dict(sorted((warnings or {}).items())),
    }
