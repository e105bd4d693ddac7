"""Configuration, read from the environment (docs/operations.md) and overridable by `serve --flags`.

Nothing here is created at import time: `get_settings()` reads the environment when it is called, and the app
factory, the CLI and the tests each pass a `Settings` object down explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROFILESTORE_", extra="ignore")

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "PROFILESTORE_DATABASE_URL")
    )
    read_database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("READ_DATABASE_URL", "PROFILESTORE_READ_DATABASE_URL")
    )
    home: Path = Path("~/.local/share/profilestore").expanduser()
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1

    # Connection pool of one app process.
    pool_min_size: int = 2
    pool_max_size: int = 16
    # How long a request waits for a connection (or for a dead database) before it is answered 503.
    db_timeout_seconds: float = 5.0
    retry_after_seconds: int = 5

    # Ingestion limits (docs/ingest.md section 3).
    max_body_bytes: int = 10_000_000  # after decompression
    max_records: int = 2000
    max_record_bytes: int = 1_000_000
    max_value_bytes: int = 256_000  # one list or object value
    max_value_depth: int = 3
    max_profile_properties: int = 2000
    max_profile_bytes: int = 1_000_000
    # How long a `$delete` keeps dropping stale updates, counted from when the deletion arrived.
    tombstone_days: float = 7.0
    # Updates whose $time is more than this far ahead of the receipt time are clamped to it.
    future_clamp_seconds: float = 3600.0
    # Read API: a pagination session of /api/2.0/engage expires after this long without a request.
    query_session_idle_seconds: float = 3600.0

    # Database work (db/engine.py, db/sql/0007_fold.sql): what one request may make Postgres do.
    # A statement of a service connection is cancelled after this long (ingestion answers 503: nothing was
    # applied); 0: no limit.
    statement_timeout_seconds: float = 30.0
    # A service connection left idle inside a transaction is closed after this long; 0: never.
    idle_in_transaction_timeout_seconds: float = 60.0
    # The same two inside streamed exports and /api/2.0/engage pagination sessions, long by nature: an export
    # waits for its client between fetches, and one whose client stops reading is dropped after this long.
    long_statement_timeout_seconds: float = 600.0
    export_idle_timeout_seconds: float = 600.0
    # List elements one request's $union, $append and $remove may handle (the stored lists' and the operands'
    # together: 2,000 records on lists of 500); a list operation past it is refused with an ingestion warning,
    # the rest applies.
    max_list_elements_per_request: int = 1_000_000
    # Ingestion warnings one request records per project; one more row counts the rest.
    max_warnings_per_request: int = 100
    # Ingestion warnings are deleted this long after they were recorded (swept hourly).
    warning_retention_days: float = 30.0
    # The profile tables' GIN indexes take new entries into a pending list; the app merges it into the index
    # this often (one process at a time), so that no request pays for the merge; 0: left to Postgres (the
    # request that fills the list, and autovacuum).
    gin_clean_seconds: float = 1.0
    # Events reach the daily rollup of analytics (`event_days`) through a pending table that the app folds in
    # this often (and before every events query reads it); 0: only before a query.
    rollup_compact_seconds: float = 1.0
    # How long the answer of an ingestion request sent with an Idempotency-Key is kept for its retries
    # (ingest/idempotency.py); swept hourly.
    idempotency_hours: float = 24.0
    # Records per second per project, and the burst (ingest/limits.py); 0: no limit.  Shared by the worker
    # processes of one `serve`.
    rate_limit_records: float = 30_000
    rate_limit_burst: float = 60_000
    # Ingestion requests one process runs at once; past it a 503 with Retry-After at once (0: no bound).
    max_writes_in_flight: int = 16
    # Reads served by READ_DATABASE_URL's replica check their API secret there, and remember one verified
    # there for this long, so they keep answering while the primary is down (deps.auth_pool_for).
    secret_cache_seconds: float = 60.0
    # One JSON line per request on standard error (ops/requests.py): request id, route, status, duration.
    request_log: bool = True
    # When set, GET /metrics needs `Authorization: Bearer <this>`.
    metrics_token: str | None = None

    # Connections (the server protocol, profilestore/server.py): what one client may send and hold, with no
    # credentials needed. Header fields of one request, in bytes (431); the URL is not a header field.
    max_header_bytes: int = 65_536
    # From a request's first byte (a new connection's opening) to the end of its headers (408).
    header_timeout_seconds: float = 20.0
    # A body must arrive within this from the end of the headers, plus 1 s per min_upload_bytes_per_second
    # received (408); a long URL gets the same extra time. At that rate, a 10 MB body may take about 630 s.
    body_timeout_seconds: float = 20.0
    min_upload_bytes_per_second: int = 16_384
    # A response the client stops reading is dropped after this long stalled.
    send_timeout_seconds: float = 60.0
    # An idle connection between requests is closed after this long (uvicorn's timeout_keep_alive).
    keep_alive_seconds: float = 5.0
    # On SIGTERM the server stops accepting connections and gives the requests in flight this long to finish
    # (a rolling restart loses nothing acknowledged); then it closes its pools and exits.
    shutdown_grace_seconds: float = 30.0
    # Open connections per app process (lowered to leave 128 descriptors of `ulimit -n`); past it, the one
    # waiting longest for its request is closed to make room.
    max_connections: int = 1000

    # The HTTP surface (security.py).  The read and admin API (paths under /api/) answers cross-origin only to
    # these origins: comma-separated, each exactly as browsers send it (`https://dash.example.com`, a port if
    # not the default); `*` and `null` are refused; empty: no cross-origin reads.  Ingestion (/engage,
    # /groups, /track, /import) answers every origin, with credentials, for the browser SDK.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # A read or admin API body over this many bytes is a 413 (one that declares it, unread); its credentials
    # are checked before any of it is read.
    max_api_body_bytes: int = 32_000_000
    # Postgres connections of the read and admin API and its authentication, apart from ingestion's pool
    # (pool_max_size), so that writers cannot starve reads.
    api_pool_size: int = 4
    # `Strict-Transport-Security: max-age=N` on every answer served over HTTPS; 0: none.
    hsts_max_age_seconds: int = 31_536_000

    # CSV imports (imports/, docs/import.md).  An upload to /api/profiles/import over this many bytes (as
    # sent, compressed or not) is a 413; uploads are streamed to a file, never held in memory.
    max_import_bytes: int = 2_000_000_000
    # One line of the file (a quoted cell may span several: the cell counts); longer: the row is skipped.
    max_import_line_bytes: int = 16_000_000
    # One cell; larger: its row is skipped with a warning.
    max_import_cell_bytes: int = 256_000
    # Columns of a file; more: the file is refused.
    max_import_columns: int = 2000
    # Rows written per transaction: a crash loses at most these, and re-running the import converges.
    import_chunk_rows: int = 20_000
    # Import jobs one server process runs at once (each in its own process); more: 429 with Retry-After.
    max_import_jobs: int = 2
    # What /api/profiles/import/preview reads of an upload: the first N bytes (the rest is not read).
    import_preview_bytes: int = 1_000_000
    # Import jobs, with their warnings, are deleted this long after they finished (swept with warnings).
    import_retention_days: float = 30.0

    # The web page (web/): a browser session lasts this long after signing in.
    session_max_age_seconds: int = 43_200

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else list(value)
        origins = []
        for item in (str(i).strip() for i in items):
            if not item:
                continue
            parts = urlsplit(item.lower())
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or "@" in parts.netloc
                or parts.path not in ("", "/")
                or parts.query
                or parts.fragment
            ):
                raise ValueError(f"{item!r} is not an origin like https://app.example.com (no *, no null)")
            origins.append(f"{parts.scheme}://{parts.netloc}")
        return tuple(origins)


def get_settings(**overrides: object) -> Settings:
    """Read the environment now; keyword arguments win over it (used by `serve --host ...`)."""
    values = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**values)  # type: ignore[arg-type]
