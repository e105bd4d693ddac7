"""Read API: GIN indexes for `where` on profiles and group profiles, and the pagination sessions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_profiles_properties",
        "profiles",
        ["properties"],
        postgresql_using="gin",
        postgresql_ops={"properties": "jsonb_path_ops"},
    )
    op.create_index(
        "ix_profiles_keys", "profiles", [sa.text("profilestore_keys(properties)")], postgresql_using="gin"
    )
    op.create_index(
        "ix_group_profiles_properties",
        "group_profiles",
        ["properties"],
        postgresql_using="gin",
        postgresql_ops={"properties": "jsonb_path_ops"},
    )
    op.create_table(
        "query_sessions",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=True),
        sa.Column("page_size", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("touched_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_query_sessions"),
        prefixes=["UNLOGGED"],
    )
    op.create_table(
        "query_session_pages",
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("page", sa.BigInteger(), nullable=False),
        sa.Column("ids", ARRAY(sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "page", name="pk_query_session_pages"),
        prefixes=["UNLOGGED"],
    )


def downgrade() -> None:
    op.drop_table("query_session_pages")
    op.drop_table("query_sessions")
    op.drop_index("ix_group_profiles_properties", table_name="group_profiles")
    op.drop_index("ix_profiles_keys", table_name="profiles")
    op.drop_index("ix_profiles_properties", table_name="profiles")
