"""The daily rollup of events for analytics: `event_days`, one row per (project, UTC day, event, user) with
its number of events, keyed by integers from the per-project dictionaries `event_names` and `event_users`;
kept from `events` through `event_days_pending` (triggers append, a compaction folds in:
db/sql/0011_event_days.sql) and filled from the events already stored.

The backfill runs with `events` locked against writes (SHARE mode: reads go on), so no event is counted twice
or missed between the triggers' creation and the fill.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from profilestore.db.migrate import sql_file

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TRIGGERS = ("insert", "update", "delete")  # event_days_X on events, each with profilestore_event_days_X()
# The pending changes are vacuumed often: rows are deleted as fast as they come, and each compaction reads
# the whole table.
PENDING_VACUUM = {"autovacuum_vacuum_scale_factor": 0, "autovacuum_vacuum_threshold": 10000}
BACKFILL = [
    "INSERT INTO event_names (project_id, name) SELECT DISTINCT project_id, event FROM events ORDER BY 1, 2",
    "INSERT INTO event_users (project_id, distinct_id) SELECT DISTINCT project_id, distinct_id FROM events"
    " WHERE distinct_id <> '' ORDER BY 1, 2",
    "INSERT INTO event_days (project_id, day, event_id, user_id, events)"
    " SELECT e.project_id, (e.time AT TIME ZONE 'UTC')::date, k.id, coalesce(u.id, 0), count(*)"
    " FROM events AS e"
    " JOIN event_names AS k ON k.project_id = e.project_id AND k.name = e.event"
    " LEFT JOIN event_users AS u ON u.project_id = e.project_id AND u.distinct_id = e.distinct_id"
    " AND e.distinct_id <> '' GROUP BY 1, 2, 3, 4",
]


def upgrade() -> None:
    op.create_table(
        "event_names",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_event_names"),
        sa.UniqueConstraint("project_id", "name", name="uq_event_names_project_id_name"),
    )
    op.create_table(
        "event_users",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("distinct_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_event_users"),
        sa.UniqueConstraint("project_id", "distinct_id", name="uq_event_users_project_id_distinct_id"),
    )
    op.create_table(
        "event_days",
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "day", "event_id", "user_id", name="pk_event_days"),
    )
    op.create_table(
        "event_days_pending",
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("distinct_id", sa.Text(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
    )
    options = ", ".join(f"{k} = {v}" for k, v in PENDING_VACUUM.items())
    op.execute(f"ALTER TABLE event_days_pending SET ({options})")
    op.execute("LOCK TABLE events IN SHARE MODE")
    op.execute(sql_file("0011_event_days.sql"))
    for statement in BACKFILL:
        op.execute(statement)
    op.execute("ANALYZE event_names, event_users, event_days")  # the planner's estimates from the start


def downgrade() -> None:
    for kind in TRIGGERS:
        op.execute(f"DROP TRIGGER event_days_{kind} ON events")
        op.execute(f"DROP FUNCTION profilestore_event_days_{kind}()")
    op.execute("DROP FUNCTION profilestore_event_days_compact()")
    op.drop_table("event_days_pending")
    op.drop_table("event_days")
    op.drop_table("event_users")
    op.drop_table("event_names")
