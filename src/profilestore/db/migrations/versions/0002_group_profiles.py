"""Group profiles (/groups): group_profiles, their tombstones, and the /groups write function.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from profilestore.db.migrate import sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "group_profiles",
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("group_id", sa.Text(), nullable=False),
        sa.Column("properties", JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("prop_times", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("max_time", sa.Double(), nullable=True),
        sa.Column("delete_time", sa.Double(), nullable=True),
        sa.Column("delete_until", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("project_id", "group_key", "group_id", name="pk_group_profiles"),
    )
    op.create_table(
        "group_profile_tombstones",
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("group_id", sa.Text(), nullable=False),
        sa.Column("delete_time", sa.Double(), nullable=False),
        sa.Column("delete_until", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "group_key", "group_id", name="pk_group_profile_tombstones"),
    )
    op.execute(sql_file("0002_apply_groups.sql"))


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION profilestore_apply_groups(jsonb, jsonb, boolean, jsonb, "
        "double precision, double precision, integer, integer)"
    )
    op.drop_table("group_profile_tombstones")
    op.drop_table("group_profiles")
