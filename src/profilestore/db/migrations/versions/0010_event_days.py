"""The daily rollup of events for analytics: `event_days`, one row per (project, UTC day, event, distinct_id)
with its number of events, kept by triggers on `events` (db/sql/0010_event_days.sql) and filled from the
events already stored.

The backfill runs with `events` locked against writes (SHARE mode: reads go on), so no event is counted twice
or missed between the triggers' creation and the fill.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from profilestore.db.migrate import sql_file

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TRIGGERS = ("insert", "update", "delete")  # event_days_X on events, each with profilestore_event_days_X()


def upgrade() -> None:
    op.create_table(
        "event_days",
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("distinct_id", sa.Text(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "day", "event", "distinct_id", name="pk_event_days"),
    )
    op.execute("LOCK TABLE events IN SHARE MODE")
    op.execute(sql_file("0010_event_days.sql"))
    op.execute(
        "INSERT INTO event_days (project_id, day, event, distinct_id, events)"
        " SELECT project_id, (time AT TIME ZONE 'UTC')::date, event, distinct_id, count(*) FROM events"
        " GROUP BY 1, 2, 3, 4"
    )


def downgrade() -> None:
    for kind in TRIGGERS:
        op.execute(f"DROP TRIGGER event_days_{kind} ON events")
        op.execute(f"DROP FUNCTION profilestore_event_days_{kind}()")
    op.drop_table("event_days")
