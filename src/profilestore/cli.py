"""The `profilestore` command (docs/operations.md): serve, migrate, projects create|list|rotate-secret."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from profilestore import projects
from profilestore.db.embedded import resolve_database_url
from profilestore.db.engine import libpq_dsn
from profilestore.errors import ProfilestoreError
from profilestore.ingest import limits
from profilestore.settings import Settings, get_settings

app = typer.Typer(help="A self-hosted, Mixpanel-compatible user-profile store.", no_args_is_help=True)
projects_app = typer.Typer(help="Projects: tokens and API secrets.", no_args_is_help=True)
app.add_typer(projects_app, name="projects")
console = Console()
T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _with_connection(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    url = resolve_database_url(settings)

    async def run() -> T:
        async with await psycopg.AsyncConnection.connect(
            libpq_dsn(url), autocommit=True, row_factory=psycopg.rows.dict_row
        ) as conn:
            return await work(conn)

    with _errors(console):
        return asyncio.run(run())


@contextmanager
def _errors(out: Console, *also: type[Exception]) -> Iterator[None]:
    """A known error (and those of `also`, which carry a `message`) as one red line and exit status 1."""
    known: tuple[type[Exception], ...] = (ProfilestoreError, *also)
    try:
        yield
    except known as exc:
        out.print(f"[red]error:[/red] {getattr(exc, 'message', exc)}", highlight=False)
        raise typer.Exit(1) from None
    except psycopg.OperationalError as exc:
        out.print(f"[red]error:[/red] cannot reach the database: {exc}", highlight=False)
        raise typer.Exit(1) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [PROFILESTORE_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [PROFILESTORE_PORT].")] = None,
    workers: Annotated[int | None, typer.Option(help="App processes [PROFILESTORE_WORKERS].")] = None,
    ssl_certfile: Annotated[str | None, typer.Option(help="Serve HTTPS with this certificate.")] = None,
    ssl_keyfile: Annotated[str | None, typer.Option(help="The certificate's private key.")] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Apply migrations, then serve the API (on an embedded Postgres when DATABASE_URL is unset)."""
    import uvicorn

    from profilestore.db import migrate
    from profilestore.server import uvicorn_options

    settings = get_settings(host=host, port=port, workers=workers)
    url = resolve_database_url(settings)
    migrate.upgrade(url)
    # Worker processes (and the default project's creation below) use the same database.
    os.environ["DATABASE_URL"] = url

    async def ensure_default(conn: Any) -> dict[str, Any] | None:
        if await projects.list_projects(conn):
            return None
        return await projects.create_project(conn, "default")

    created = _with_connection(get_settings(), ensure_default)
    if created:
        console.print("Created project [bold]default[/bold]. Its API secret is shown only now:")
        console.print(f"  token:      {created['token']}")
        console.print(f"  api_secret: {created['api_secret']}")
    if settings.workers > 1:
        # Every worker's metrics in files of one directory, added up by /metrics (ops/metrics.py); emptied at
        # each start, as prometheus-client's multiprocess mode requires.
        # The rate limits' buckets are shared the same way (ingest/limits.py).
        shared = tempfile.mkdtemp(prefix="profilestore-shared-")
        metrics_dir = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", shared)
        os.environ.setdefault(limits.SHARED_DIR, shared)
        for stale in [
            *Path(metrics_dir).glob("*.db"),
            Path(os.environ[limits.SHARED_DIR]) / limits.RATE_FILE,
        ]:
            stale.unlink(missing_ok=True)
    scheme = "https" if ssl_certfile else "http"
    console.print(f"profilestore listening on {scheme}://{settings.host}:{settings.port}")
    uvicorn.run(
        "profilestore.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        access_log=access_log,
        log_level="info",
        **uvicorn_options(settings),
    )


@app.command("migrate")
def migrate_command() -> None:
    """Apply the database migrations (alembic upgrade head)."""
    from profilestore.db import migrate

    migrate.upgrade(resolve_database_url(get_settings()))
    console.print("database is up to date")


@projects_app.command("create")
def projects_create(name: str, as_json: JsonOpt = False) -> None:
    """Create a project; prints its token and its API secret (shown only here)."""
    created = _with_connection(get_settings(), lambda conn: projects.create_project(conn, name))
    if as_json:
        print(json.dumps(created))
    else:
        for key, value in created.items():
            console.print(f"{key}: {value}")


@projects_app.command("list")
def projects_list(as_json: JsonOpt = False) -> None:
    """List projects: id, name, token (never secrets)."""
    found = _with_connection(get_settings(), projects.list_projects)
    if as_json:
        print(json.dumps([{"id": p.id, "name": p.name, "token": p.token} for p in found]))
        return
    table = Table("id", "name", "token")
    for p in found:
        table.add_row(str(p.id), p.name, p.token)
    console.print(table)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """`90`, `90s`, `30m`, `1h` or `2d` -> seconds."""
    text = text.strip().lower()
    unit = _UNITS.get(text[-1:])
    number = text[:-1] if unit is not None else text
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: a duration such as 90s, 30m, 1h or 2d") from None
    if not 0 <= seconds <= 365 * 86400:
        raise typer.BadParameter(f"{text!r}: between 0 and 365 days")
    return seconds


@projects_app.command("rotate-secret")
def projects_rotate_secret(
    name: str,
    grace: Annotated[
        str, typer.Option(help="How long the old secret keeps working (90s, 30m, 1h, 2d); 0: it stops now.")
    ] = "0",
    as_json: JsonOpt = False,
) -> None:
    """Give a project a new API secret; the old one stops working, or after --grace."""
    seconds = _duration(grace)
    secret = _with_connection(get_settings(), lambda conn: projects.rotate_secret(conn, name, seconds))
    if as_json:
        print(json.dumps({"name": name, "api_secret": secret, "previous_valid_seconds": seconds}))
    else:
        console.print(f"api_secret: {secret}")
        if seconds:
            console.print(f"the previous secret keeps working for {grace}")


@app.command("export")
def export_command(
    token: Annotated[str, typer.Option(help="The project's token.")],
    where: Annotated[str | None, typer.Option(help="An expression over profile properties.")] = None,
    cohort: Annotated[int | None, typer.Option(help="Only members of this saved cohort.")] = None,
    columns: Annotated[str | None, typer.Option(help="Properties to export, comma-separated.")] = None,
    format: Annotated[str, typer.Option("--format", help="csv or jsonl.")] = "csv",
    output: Annotated[str | None, typer.Option("-o", "--output", help="A file (default: stdout).")] = None,
    formula_guard: Annotated[
        bool,
        typer.Option(
            "--formula-guard/--no-formula-guard",
            help="CSV: a ' before string cells starting with = + - @ (a spreadsheet formula).",
        ),
    ] = True,
) -> None:
    """Stream every matching profile as CSV or JSONL, in constant memory."""
    from profilestore.query.params import where_param
    from profilestore.query.profiles.export import ExportQuery, ExportStats, export_lines, parse_columns

    if format not in ("csv", "jsonl"):
        console.print("[red]error:[/red] --format must be csv or jsonl")
        raise typer.Exit(2)

    async def work(conn: Any) -> int:
        project_id = await projects.project_of_token(conn, token)
        if project_id is None:
            raise ProfilestoreError("no project has this token")
        query = ExportQuery(
            format="csv" if format == "csv" else "jsonl",
            where=where_param("--where", where),
            columns=parse_columns(columns),
            cohort=cohort,
            all_users=cohort is not None,  # a cohort's members without a profile too, as the API's default
            formula_guard=formula_guard,
        )
        stats = ExportStats()
        with open(output, "wb") if output else os.fdopen(os.dup(1), "wb") as out:
            async for chunk in export_lines(conn, project_id, query, now=time.time(), stats=stats):
                out.write(chunk)
        return stats.profiles

    exported = _with_connection(get_settings(), work)
    Console(stderr=True).print(f"exported {exported} profiles")


@app.command("import-csv")
def import_csv(
    file: Annotated[str, typer.Argument(help="A CSV file (.gz read compressed), or - for standard input.")],
    token: Annotated[str, typer.Option(help="The project's token.")],
    id_column: Annotated[str | None, typer.Option(help="The identifier column.")] = None,
    group_key: Annotated[str | None, typer.Option(help="Import group profiles of this group key.")] = None,
    mode: Annotated[str, typer.Option(help="create, update or upsert.")] = "upsert",
    map_: Annotated[
        list[str] | None, typer.Option("--map", help="COLUMN=PROPERTY or COLUMN=PROPERTY:TYPE (repeatable).")
    ] = None,
    skip: Annotated[list[str] | None, typer.Option(help="A column not to import (repeatable).")] = None,
    types: Annotated[str, typer.Option(help="infer (a type per column) or string.")] = "infer",
    header: Annotated[
        bool, typer.Option("--header/--no-header", help="The first row names the columns.")
    ] = True,
    columns: Annotated[
        str | None, typer.Option(help="Column names, comma-separated (with --no-header).")
    ] = None,
    delimiter: Annotated[str | None, typer.Option(help="The delimiter (default: detected).")] = None,
    encoding: Annotated[str, typer.Option(help="The file's text encoding.")] = "utf-8",
    cohort: Annotated[str | None, typer.Option(help="Make a static cohort of the imported profiles.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Read and check everything; write no profile.")] = False,
    allow_skips: Annotated[bool, typer.Option(help="Exit 0 even when rows were skipped.")] = False,
    warnings: Annotated[str | None, typer.Option(help="Write every warning to this CSV file.")] = None,
) -> None:
    """Import user (or group) profiles from a CSV file: exit 0, 3 when rows were skipped, 1 on an error."""
    from pydantic import ValidationError

    from profilestore.imports import jobs, reading
    from profilestore.imports import sql as import_sql
    from profilestore.imports.console import SHOWN_WARNINGS, Display, print_summary
    from profilestore.imports.plan import ImportOptions, PlanError
    from profilestore.imports.run import Hooks, connect

    err = Console(stderr=True)
    try:
        options = ImportOptions(
            id_column=id_column,
            group_key=group_key,
            mode=mode,
            map=map_ or [],
            skip=skip or [],
            types=types,
            header=header,
            columns=[c.strip() for c in columns.split(",")] if columns else None,
            delimiter=delimiter,
            encoding=encoding,
            cohort=cohort,
            dry_run=dry_run,
        )
    except ValidationError as exc:
        for e in exc.errors():
            where = ".".join(str(x) for x in e["loc"]) or "options"
            err.print(f"[red]error:[/red] {where}: {e['msg']}", highlight=False)
        raise typer.Exit(2) from None
    settings = get_settings()
    with (
        _errors(err, reading.FileError, OSError),
        reading.local_file(file) as path,
        connect(resolve_database_url(settings)) as conn,
    ):
        row = conn.execute("SELECT id FROM projects WHERE token = %s", (token,)).fetchone()
        if row is None:
            raise ProfilestoreError("no project has this token")
        if warnings:
            open(warnings, "w").close()  # a path that cannot be written fails now, not after the import
        try:
            with Display(err) as display:
                job_id, _ = jobs.execute(conn, settings, int(row[0]), options, path, Hooks(progress=display))
        except PlanError as exc:  # the options do not fit the file: bad options
            err.print(f"[red]error:[/red] {exc.message}", highlight=False)
            raise typer.Exit(2) from None
        job = conn.execute("SELECT summary FROM import_jobs WHERE id = %s", (job_id,)).fetchone()
        assert job is not None
        shown = conn.execute(import_sql.READ_WARNINGS, (job_id, SHOWN_WARNINGS)).fetchall()
        if warnings:
            _write_warnings(conn, job_id, warnings)
    summary = job[0]
    print_summary(err, job_id, summary, [{"message": m} for (_, _, _, m) in shown])
    if summary["skipped"] and not allow_skips:
        raise typer.Exit(3)


def _write_warnings(conn: Any, job_id: int, path: str) -> None:
    import csv

    from profilestore.imports import sql as import_sql

    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["line", "kind", "column", "message"])
        with conn.transaction(), conn.cursor(name="warnings") as cur:
            cur.execute(
                import_sql.ALL_WARNINGS,
                (job_id,),
            )
            for batch in iter(lambda: cur.fetchmany(5000), []):
                writer.writerows(batch)


def main() -> None:
    app()
