"""The app factory.  Its lifespan owns the connection pools (and the embedded Postgres without DATABASE_URL).

Errors: the service's own JSON API answers `{"error": Name, "detail": message}`, Mixpanel's read paths
`{"error": message}` (errors.error_content); the Mixpanel-compatible ingestion endpoints render their own
errors in Mixpanel's shapes (ingest/responses.py).  What every request crosses before a route (credentials
before bodies on `/api/`, CORS, security headers, the catch-all 500) is security.py.

Interactive docs (Swagger UI, ReDoc) are off: they load their scripts from a CDN.  `/openapi.json` stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from profilestore import __version__
from profilestore.auth import VerifiedSecrets
from profilestore.cohorts.routes import router as cohorts_router
from profilestore.db.embedded import resolve_database_url
from profilestore.db.engine import make_pool
from profilestore.deps import PoolDep, SettingsDep
from profilestore.disconnect import CancelOnDisconnect
from profilestore.errors import BadRequest, DatabaseUnavailable, ProfilestoreError, error_content
from profilestore.imports import jobs as import_jobs
from profilestore.imports import run as import_run
from profilestore.imports.routes import router as imports_router
from profilestore.imports.service import Processes
from profilestore.ingest import idempotency, limits
from profilestore.ingest.events.routes import router as event_ingest_router
from profilestore.ingest.limits import RateLimiter, WritesInFlight
from profilestore.ingest.profiles.routes import router as profile_ingest_router
from profilestore.ingest.warnings import router as warnings_router
from profilestore.ops import metrics
from profilestore.ops.requests import RequestLog, configure_logging
from profilestore.ops.routes import router as metrics_router
from profilestore.projects import TokenCache
from profilestore.query.events import rollup
from profilestore.query.events.routes import router as event_query_router
from profilestore.query.profiles import sessions as query_sessions
from profilestore.query.profiles import sql as query_sql
from profilestore.query.profiles.routes import router as profile_query_router
from profilestore.security import ApiGuard, CatchAll, Cors, SecurityHeaders
from profilestore.settings import Settings, get_settings
from profilestore.web import routes as web

log = logging.getLogger("profilestore")

TOMBSTONE_SWEEP_SECONDS = 3600.0
WARNING_SWEEP_SECONDS = 3600.0
WARNING_SWEEP_BATCH = 10_000
PARTITION_CHECK_SECONDS = 86400.0
SESSION_SWEEP_SECONDS = 300.0
POOL_GAUGE_SECONDS = 5.0


async def _sweep_tombstones(app: FastAPI) -> None:
    """Drops expired profile tombstones now and then; SKIP LOCKED so it never waits on (or for) a writer."""
    while True:
        await asyncio.sleep(TOMBSTONE_SWEEP_SECONDS)
        with contextlib.suppress(psycopg.Error, PoolTimeout):
            async with app.state.pool.connection() as conn:
                await conn.execute(
                    "DELETE FROM profile_tombstones WHERE ctid IN (SELECT ctid FROM profile_tombstones"
                    " WHERE delete_until < extract(epoch FROM now()) FOR UPDATE SKIP LOCKED LIMIT 10000)"
                )


async def _sweep_warnings(app: FastAPI) -> None:
    """Deletes ingestion warnings older than `warning_retention_days` (0: kept) hourly, 10,000 rows a
    statement until none is left; SKIP LOCKED, as for tombstones."""
    days = app.state.settings.warning_retention_days
    while days > 0:
        await asyncio.sleep(WARNING_SWEEP_SECONDS)
        with contextlib.suppress(psycopg.Error, PoolTimeout):
            deleted = WARNING_SWEEP_BATCH
            while deleted == WARNING_SWEEP_BATCH:
                async with app.state.pool.connection() as conn:
                    cur = await conn.execute(
                        "DELETE FROM ingestion_warnings WHERE id IN (SELECT id FROM ingestion_warnings"
                        " WHERE created_at < now() - %(days)s * interval '1 day'"
                        " FOR UPDATE SKIP LOCKED LIMIT %(batch)s)",
                        {"days": days, "batch": WARNING_SWEEP_BATCH},
                    )
                    deleted = cur.rowcount


async def _sweep_idempotency_keys(app: FastAPI) -> None:
    """Hourly: the answers kept for Idempotency-Keys, past `idempotency_hours` (ingest/idempotency.py)."""
    hours = app.state.settings.idempotency_hours
    while True:
        await asyncio.sleep(WARNING_SWEEP_SECONDS)
        with contextlib.suppress(psycopg.Error, PoolTimeout):
            async with app.state.pool.connection() as conn:
                await idempotency.sweep(conn, hours)


async def _sweep_imports(app: FastAPI) -> None:
    """Hourly: import jobs whose process died unseen become interrupted (their upload files deleted), and
    finished jobs past `import_retention_days` go (imports/jobs.py sweep).  In a thread: a plain connection,
    and file deletions."""
    settings: Settings = app.state.settings

    def sweep() -> None:
        with import_run.connect(app.state.database_url) as conn:
            import_jobs.sweep(conn, settings.import_retention_days)

    while True:
        await asyncio.sleep(WARNING_SWEEP_SECONDS)
        with contextlib.suppress(psycopg.Error, OSError):
            await asyncio.to_thread(sweep)


async def _expire_query_sessions(app: FastAPI) -> None:
    """Drops /api/2.0/engage pagination sessions idle for longer than their expiry, every few minutes."""
    settings: Settings = app.state.settings
    while True:
        await asyncio.sleep(SESSION_SWEEP_SECONDS)
        with contextlib.suppress(psycopg.Error, PoolTimeout):
            async with app.state.pool.connection() as conn:
                await conn.execute(query_sql.EXPIRE_SESSIONS, {"idle": settings.query_session_idle_seconds})


async def _ensure_partitions(app: FastAPI) -> None:
    """Creates the monthly `events` partitions of this month and the next 3, at start-up and then daily
    (db/sql/0003_event_partitions.sql); a database that is down is tried again at the next round."""
    while True:
        with contextlib.suppress(psycopg.Error, PoolTimeout):
            async with app.state.pool.connection() as conn:
                await conn.execute("SELECT profilestore_ensure_event_partitions(now(), 4)")
        await asyncio.sleep(PARTITION_CHECK_SECONDS)


GIN_INDEXES = ("ix_profiles_properties", "ix_group_profiles_properties")
GIN_LOCK = 0x67696E  # the advisory lock of the one process cleaning at a time ("gin")


async def _clean_gin_pending_lists(app: FastAPI) -> None:
    """Every `gin_clean_seconds`, merges the GIN indexes' pending lists (migration 0010) into the indexes,
    so the merge is never paid by the request whose insert fills the list (Postgres runs it there, taking
    as long as the list is big).  One process at a time: the others skip the round."""
    interval = app.state.settings.gin_clean_seconds
    while interval > 0:
        await asyncio.sleep(interval)
        with contextlib.suppress(psycopg.Error, PoolTimeout):
            async with app.state.pool.connection() as conn, conn.transaction():
                cur = conn.cursor(row_factory=tuple_row)
                await cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (GIN_LOCK,))
                locked = await cur.fetchone()
                if locked is not None and locked[0]:
                    for index in GIN_INDEXES:
                        await cur.execute("SELECT gin_clean_pending_list(%s::regclass)", (index,))


async def _compact_event_days(app: FastAPI) -> None:
    """Every `rollup_compact_seconds`, folds the changes the `events` triggers appended to
    `event_days_pending` into the daily rollup (query/events/rollup.py), so that the table stays small and
    a question pays little for it.  Concurrent compactions (other processes, a query) wait for each other."""
    interval = app.state.settings.rollup_compact_seconds
    while interval > 0:
        await asyncio.sleep(interval)
        with contextlib.suppress(psycopg.Error, PoolTimeout):
            async with app.state.pool.connection() as conn:
                await rollup.compact(conn, app.state.settings)


async def _gauge_pools(app: FastAPI) -> None:
    """Every few seconds, the pools' connections as metrics (/metrics also reads them when scraped)."""
    while True:
        metrics.record_pools(app.state)
        await asyncio.sleep(POOL_GAUGE_SECONDS)


def _tune_gc() -> None:
    """Keep the cyclic GC off the hot path.  Measured (bench/engage.py): a request holds ~2,000 objects, so
    they reach the oldest generation and every full collection walked the ~120,000 objects left by imports,
    ~50 ms each, a third of the server's time.  Freezing what exists after start-up and collecting young
    objects less often removes that; the service keeps no reference cycles of its own on the hot path."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def create_app(settings: Settings | None = None, *, database_url: str | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = database_url or resolve_database_url(settings)

        async def open_pool(dsn: str, min_size: int, max_size: int) -> AsyncConnectionPool:
            pool = make_pool(dsn, settings, min_size=min_size, max_size=max_size)
            # Not waiting: a database that is down at start-up gives 503s until it is up, not a crash.
            await pool.open(wait=False)
            return pool

        app.state.database_url = url  # import jobs' processes connect to it (imports/jobs.py)
        pool = app.state.pool = await open_pool(url, settings.pool_min_size, settings.pool_max_size)
        # The read and admin API's own connections (deps.pool_for): writers cannot take them.
        api_pool = app.state.api_pool = await open_pool(url, 1, settings.api_pool_size)
        # READ_DATABASE_URL: a streaming replica for the reads that write nothing (exports, event queries).
        read_pool = api_pool
        if settings.read_database_url:
            read_pool = await open_pool(settings.read_database_url, 1, settings.pool_max_size)
        app.state.read_pool = read_pool
        _tune_gc()
        sweeper = asyncio.create_task(_sweep_tombstones(app))
        warnings_sweeper = asyncio.create_task(_sweep_warnings(app))
        partitioner = asyncio.create_task(_ensure_partitions(app))
        sessions = asyncio.create_task(_expire_query_sessions(app))
        imports = asyncio.create_task(_sweep_imports(app))
        gin = asyncio.create_task(_clean_gin_pending_lists(app))
        compactor = asyncio.create_task(_compact_event_days(app))
        keys = asyncio.create_task(_sweep_idempotency_keys(app))
        gauges = asyncio.create_task(_gauge_pools(app))
        try:
            yield
        finally:
            sweeper.cancel()
            warnings_sweeper.cancel()
            partitioner.cancel()
            sessions.cancel()
            imports.cancel()
            gin.cancel()
            compactor.cancel()
            keys.cancel()
            gauges.cancel()
            await query_sessions.finish_builds(timeout=settings.db_timeout_seconds)
            await app.state.import_processes.stop(timeout=settings.db_timeout_seconds * 2)
            if read_pool is not api_pool:
                await read_pool.close()
            await api_pool.close()
            await pool.close()
            metrics.mark_dead(os.getpid())

    app = FastAPI(
        title="profilestore",
        version=__version__,
        summary="A self-hosted, Mixpanel-compatible user-profile store on Postgres",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.tokens = TokenCache()
    app.state.verified_secrets = VerifiedSecrets(settings.secret_cache_seconds)
    # Ingestion's guards (ingest/limits.py): per-project rate limits, shared by the processes of a `serve`.
    app.state.rate_limiter = RateLimiter(
        settings.rate_limit_records, settings.rate_limit_burst, os.environ.get(limits.SHARED_DIR)
    )
    app.state.writes = WritesInFlight(settings.max_writes_in_flight)
    app.state.import_processes = Processes()
    # Added innermost first: a request crosses RequestLog, SecurityHeaders, Cors, CatchAll, ApiGuard, then
    # CancelOnDisconnect (a client gone before its answer stops the work: disconnect.py).
    app.add_middleware(CancelOnDisconnect)
    app.add_middleware(ApiGuard)
    app.add_middleware(CatchAll)
    app.add_middleware(Cors, origins=settings.cors_origins)
    app.add_middleware(SecurityHeaders, hsts_max_age_seconds=settings.hsts_max_age_seconds)
    app.add_middleware(RequestLog)  # outermost: every answer has its id, log line and metrics (ops/)
    configure_logging(settings.request_log)
    metrics.initialise()
    app.include_router(metrics_router)
    app.include_router(profile_ingest_router)
    app.include_router(event_ingest_router)
    app.include_router(warnings_router)
    app.include_router(profile_query_router)
    app.include_router(event_query_router)
    app.include_router(cohorts_router)
    app.include_router(imports_router)
    web.install(app)
    _install_error_handlers(app)

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="The database is reachable")
    async def readyz(pool: PoolDep, settings: SettingsDep) -> dict[str, str]:
        try:
            async with pool.connection(timeout=min(2.0, settings.db_timeout_seconds)) as conn:
                await conn.execute("SELECT 1")
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise DatabaseUnavailable(
                "database unreachable", retry_after=settings.retry_after_seconds
            ) from exc
        return {"status": "ready"}

    return app


def _error_body(name: str, detail: object) -> dict[str, object]:
    return {"error": name, "detail": detail}


def _error_response(request: Request, exc: ProfilestoreError) -> JSONResponse:
    """The service's shape `{"error": Name, "detail": message}`, or Mixpanel's `{"error": message}` on the
    Mixpanel-compatible read paths."""
    content = error_content(request.scope["path"], exc)
    return JSONResponse(content, status_code=exc.status_code, headers=exc.headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProfilestoreError)
    async def domain_error(request: Request, exc: ProfilestoreError) -> Response:
        if web.is_page(request.url.path):
            return web.error_page(request, exc)
        return _error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        detail = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        if web.is_page(request.url.path):
            text = "; ".join(f"{d['field']}: {d['message']}" for d in detail)
            return web.error_page(request, BadRequest(text))
        return JSONResponse(_error_body("ValidationError", detail), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            _error_body(type(exc).__name__, exc.detail), status_code=exc.status_code, headers=exc.headers
        )

    # Anything else: security.CatchAll.
