"""Configuration, read from the environment (docs/operations.md) and overridable by `serve --flags`.

Nothing here is created at import time: `get_settings()` reads the environment when it is called, and the app
factory, the CLI and the tests each pass a `Settings` object down explicitly.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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


def get_settings(**overrides: object) -> Settings:
    """Read the environment now; keyword arguments win over it (used by `serve --host ...`)."""
    values = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**values)  # type: ignore[arg-type]
