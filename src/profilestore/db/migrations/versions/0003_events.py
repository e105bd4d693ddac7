"""Events (partitioned by month on `time`, with a DEFAULT partition), users_seen, and partition upkeep.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from profilestore.db.migrate import sql_file

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("distinct_id", sa.Text(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("insert_id", sa.Text(), nullable=True),
        sa.Column("properties", JSONB(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        postgresql_partition_by="RANGE (time)",
    )
    op.create_index(
        "ix_events_project_id_distinct_id_time",
        "events",
        ["project_id", "distinct_id", sa.text("time DESC")],
    )
    op.create_index("ix_events_project_id_event_time", "events", ["project_id", "event", "time"])
    op.create_index(
        "uq_events_dedupe",
        "events",
        ["project_id", "event", "distinct_id", "time", "insert_id"],
        unique=True,
    )
    op.execute("CREATE TABLE events_default PARTITION OF events DEFAULT")
    op.create_table(
        "users_seen",
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("distinct_id", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "distinct_id", name="pk_users_seen"),
    )
    op.execute(sql_file("0003_event_partitions.sql"))
    op.execute("SELECT profilestore_ensure_event_partitions(now() - interval '2 months', 5)")


def downgrade() -> None:
    op.execute("DROP FUNCTION profilestore_ensure_event_partitions(timestamptz, integer)")
    op.drop_table("users_seen")
    op.execute("DROP TABLE events")  # and every partition with it
