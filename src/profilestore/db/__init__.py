"""Postgres: the schema (Alembic's metadata), the connection pool, migrations and the embedded server."""
