"""The web page's signing key (one row, made at first use, shared by every app process), and the index of
the Users table's default order, most recently seen first (profiles without `$last_seen` last).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_keys",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_web_keys"),
    )
    op.create_index(
        "ix_profiles_last_seen",
        "profiles",
        ["project_id", sa.text("coalesce(last_seen, '-infinity'::timestamptz)"), "distinct_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_profiles_last_seen", table_name="profiles")
    op.drop_table("web_keys")
