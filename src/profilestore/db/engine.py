"""Connections: the DSN the app uses, the async pool the app's lifespan owns (with the session limits of the
service's connections), and a sync connection for CLI.

psycopg 3 speaks to Postgres directly (the hot path is one statement per request); SQLAlchemy is used for
the schema and to compile the few Core queries elsewhere (`compile_query`).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import ClauseElement

from profilestore.settings import Settings

_DIALECT = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]


def libpq_dsn(url: str) -> str:
    """`postgresql+psycopg://...` (SQLAlchemy style) or `postgres://...` -> a DSN libpq accepts."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + libpq_dsn(url)[len("postgresql://") :]


def compile_query(stmt: ClauseElement) -> tuple[str, dict[str, Any]]:
    """A SQLAlchemy Core statement -> (SQL text with %(name)s placeholders, parameters) for psycopg."""
    compiled = stmt.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
    return str(compiled), dict(compiled.params)


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    # Every statement of the service is its own transaction unless it opens one explicitly.
    await conn.set_autocommit(True)


def _ms(seconds: float) -> int:
    """Seconds as a Postgres timeout in milliseconds (0: none)."""
    return max(1, round(seconds * 1000)) if seconds > 0 else 0


def make_pool(dsn: str, settings: Settings, *, min_size: int, max_size: int) -> AsyncConnectionPool:
    """An unopened pool; the lifespan opens it without waiting (a down database is a 503, not a crash).
    A request waits `db_timeout_seconds` for a connection; its connections cancel a statement after
    `statement_timeout_seconds` and close when idle in a transaction for
    `idle_in_transaction_timeout_seconds`, so no request holds Postgres for longer (long_running lifts both
    for one transaction)."""
    # JIT off: it compiles a statement whose estimated cost is high, which a misestimate easily makes, and
    # costs more than it saves at this service's query sizes (measured: a cohort count over 1M profiles
    # and 10M events, 1.8 s without JIT, 2.3 s with it, 1.9 s of which compiling).
    options = (
        "-c jit=off"
        f" -c statement_timeout={_ms(settings.statement_timeout_seconds)}"
        f" -c idle_in_transaction_session_timeout={_ms(settings.idle_in_transaction_timeout_seconds)}"
    )
    timeout = settings.db_timeout_seconds
    return AsyncConnectionPool(
        libpq_dsn(dsn),
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        open=False,
        configure=_configure,
        kwargs={"row_factory": dict_row, "connect_timeout": max(1, int(timeout)), "options": options},
        reconnect_timeout=0,  # keep trying for ever: the database may come back
    )


async def long_running(conn: psycopg.AsyncConnection[Any], settings: Settings) -> None:
    """Inside a transaction, for the rest of it: statements may run `long_statement_timeout_seconds`, and the
    transaction may wait for its client `export_idle_timeout_seconds` between statements (streamed exports,
    which fetch as fast as their client reads; pagination sessions, which store every matching id).  Local to
    the transaction, so the connection goes back to the pool with its own limits."""
    await conn.execute(
        "SELECT set_config('statement_timeout', %s, true),"
        " set_config('idle_in_transaction_session_timeout', %s, true)",
        (str(_ms(settings.long_statement_timeout_seconds)), str(_ms(settings.export_idle_timeout_seconds))),
    )


def connect(dsn: str) -> psycopg.Connection[dict[str, Any]]:
    """A plain autocommit connection (CLI, migrations, tests)."""
    return psycopg.connect(libpq_dsn(dsn), autocommit=True, row_factory=dict_row)
