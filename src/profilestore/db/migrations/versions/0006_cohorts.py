"""Cohorts: saved definitions and static members; engage sessions that list ids without a profile.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cohorts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("definition", JSONB(), nullable=True),
        sa.Column("is_static", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cohorts"),
    )
    op.create_index("ix_cohorts_project_id_id", "cohorts", ["project_id", "id"])
    op.create_table(
        "cohort_members",
        sa.Column("cohort_id", sa.BigInteger(), nullable=False),
        sa.Column("distinct_id", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cohort_id"], ["cohorts.id"], name="fk_cohort_members_cohort_id_cohorts", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("cohort_id", "distinct_id", name="pk_cohort_members"),
    )
    op.add_column(
        "query_sessions",
        sa.Column("all_users", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("query_sessions", "all_users")
    op.drop_table("cohort_members")
    op.drop_index("ix_cohorts_project_id_id", table_name="cohorts")
    op.drop_table("cohorts")
