"""Alembic environment: migrates the configured database (DATABASE_URL, else the embedded Postgres)."""

from __future__ import annotations

import re
from typing import Any

from alembic import context
from sqlalchemy import create_engine, pool

from profilestore.db.engine import sqlalchemy_url
from profilestore.db.schema import metadata
from profilestore.settings import get_settings


def database_url() -> str:
    url = context.config.attributes.get("database_url")
    if url:
        return str(url)
    settings = get_settings()
    if settings.database_url:
        return settings.database_url
    from profilestore.db.embedded import embedded_database_url

    return embedded_database_url(settings.home)


# Partitions of partitioned tables (events_2026_11, events_default) are made at run time, not by the metadata.
_PARTITION = re.compile(r"events_(\d{4}_\d{2}|default)")


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Leave partitions (and so their indexes) out of `alembic check` / autogenerate."""
    return not (type_ == "table" and reflected and name is not None and _PARTITION.fullmatch(name))


def run_migrations_offline() -> None:
    context.configure(
        url=sqlalchemy_url(database_url()),
        target_metadata=metadata,
        literal_binds=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(sqlalchemy_url(database_url()), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=metadata, compare_type=True, include_object=include_object
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
