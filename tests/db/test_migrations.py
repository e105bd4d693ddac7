"""The migrations build the schema the metadata describes (no drift), and go down and up again cleanly."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from profilestore.db import migrate
from profilestore.db.engine import connect
from support import replace_dbname


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    name = f"profilestore_mig_{uuid.uuid4().hex[:10]}"
    with connect(database_url) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield replace_dbname(database_url, name)
    with connect(database_url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tables(url: str) -> set[str]:
    with connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r["tablename"] for r in rows}


def test_upgrade_check_downgrade_upgrade(empty_database: str) -> None:
    migrate.upgrade(empty_database)
    assert {"projects", "profiles", "profile_tombstones", "ingestion_warnings"} <= tables(empty_database)
    migrate.check(empty_database)  # `alembic check`: the metadata and the database agree
    migrate.downgrade(empty_database)
    assert tables(empty_database) <= {"alembic_version"}
    with connect(empty_database) as conn:
        functions = conn.execute("SELECT proname FROM pg_proc WHERE proname LIKE 'profilestore%'").fetchall()
    assert functions == []
    migrate.upgrade(empty_database)
    migrate.check(empty_database)
