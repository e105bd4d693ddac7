"""Alembic environment: migrates the configured database (DATABASE_URL, else the embedded Postgres)."""

from __future__ import annotations

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


def run_migrations_offline() -> None:
    context.configure(url=sqlalchemy_url(database_url()), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(sqlalchemy_url(database_url()), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
