"""Projects, profiles, profile tombstones, ingestion warnings, and the /engage write functions.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from profilestore.db.migrate import sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("api_secret_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
        sa.UniqueConstraint("name", name="uq_projects_name"),
        sa.UniqueConstraint("token", name="uq_projects_token"),
    )
    op.create_table(
        "profiles",
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("distinct_id", sa.Text(), nullable=False),
        sa.Column("properties", JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("prop_times", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("max_time", sa.Double(), nullable=True),
        sa.Column("delete_time", sa.Double(), nullable=True),
        sa.Column("delete_until", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("project_id", "distinct_id", name="pk_profiles"),
    )
    op.create_table(
        "profile_tombstones",
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("distinct_id", sa.Text(), nullable=False),
        sa.Column("delete_time", sa.Double(), nullable=False),
        sa.Column("delete_until", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "distinct_id", name="pk_profile_tombstones"),
    )
    op.create_table(
        "ingestion_warnings",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("entity", sa.Text(), nullable=False),
        sa.Column("operation", sa.Text(), nullable=False),
        sa.Column("property", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ingestion_warnings"),
    )
    op.create_index("ix_ingestion_warnings_project_id_id", "ingestion_warnings", ["project_id", "id"])
    op.execute(sql_file("0001_fold.sql"))
    op.execute(sql_file("0001_apply_profiles.sql"))


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION profilestore_apply_profiles(jsonb, jsonb, boolean, jsonb, "
        "double precision, double precision, integer, integer)"
    )
    op.execute(
        "DROP FUNCTION profilestore_fold(bigint, text, text, boolean, jsonb, jsonb, double precision, "
        "double precision, double precision, double precision, jsonb, double precision, "
        "double precision, integer, integer)"
    )
    op.execute(
        "DROP FUNCTION profilestore_put(jsonb, text, jsonb, integer, integer, bigint, text, text, text)"
    )
    op.execute("DROP FUNCTION profilestore_warn(bigint, text, text, text, text, text)")
    op.execute("DROP FUNCTION profilestore_time(jsonb)")
    op.drop_table("ingestion_warnings")
    op.drop_table("profile_tombstones")
    op.drop_table("profiles")
    op.drop_table("projects")
