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


def test_the_rollup_is_filled_from_the_events_stored_before_it(empty_database: str) -> None:
    """Revision 0011 on a populated database: `event_days` holds every event already stored (the monthly
    partitions and the default one), and the triggers and the compaction keep it from then on."""
    migrate.upgrade(empty_database, "0010")
    with connect(empty_database) as conn:
        conn.execute(
            "INSERT INTO events (project_id, event, distinct_id, time, insert_id, properties)"
            " SELECT 1 + g % 2, (ARRAY['A', 'B', 'C'])[1 + g % 3],"
            " (ARRAY['u1', 'u2', ''])[1 + (g / 3) % 3], now() - g * interval '37 minutes', 'i' || g, '{}'"
            " FROM generate_series(1, 2000) AS g"
        )
        conn.execute(
            "INSERT INTO events (project_id, event, distinct_id, time, insert_id, properties)"
            " VALUES (1, 'A', 'u1', '2001-01-01T12:00:00Z', 'old', '{}')"
        )
    migrate.upgrade(empty_database)
    grouped = (
        "SELECT project_id, (time AT TIME ZONE 'UTC')::date AS day, event, distinct_id, count(*) AS events"
        " FROM events GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    )
    rollup = (
        "SELECT r.project_id, r.day, k.name AS event, coalesce(u.distinct_id, '') AS distinct_id, r.events"
        " FROM event_days AS r JOIN event_names AS k ON k.id = r.event_id"
        " LEFT JOIN event_users AS u ON u.id = r.user_id ORDER BY 1, 2, 3, 4"
    )
    with connect(empty_database) as conn:
        assert conn.execute(rollup).fetchall() == conn.execute(grouped).fetchall()
        assert sum(r["events"] for r in conn.execute(rollup).fetchall()) == 2001
        conn.execute("DELETE FROM events WHERE insert_id = 'old'")
        assert conn.execute("SELECT profilestore_event_days_compact() AS n").fetchone() == {"n": 1}
        assert conn.execute(rollup).fetchall() == conn.execute(grouped).fetchall()
