"""One GIN index per profile table instead of two: `jsonb_ops` on `properties` answers both equality
(`@>`) and `defined()` (`?`), where `jsonb_path_ops` (equality) and a GIN over `profilestore_keys()`
(defined) each cost an index insert per update.  A larger pending list (`gin_pending_list_limit`), emptied
by the app in the background (app.py `_clean_gin_pending_lists`), keeps the merge off the request path.

Upgrading rebuilds the index (writes to the table wait meanwhile: 19-20 s per million profiles, measured).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

PENDING_LIST_KB = 16384  # gin_pending_list_limit: 16 MB (Postgres' default is 4 MB)


def _gin(table: str, ops: str | None) -> None:
    op.create_index(
        f"ix_{table}_properties",
        table,
        ["properties"],
        postgresql_using="gin",
        postgresql_ops={"properties": ops} if ops else {},
        postgresql_with={"gin_pending_list_limit": PENDING_LIST_KB} if ops is None else {},
    )


def upgrade() -> None:
    op.drop_index("ix_profiles_keys", table_name="profiles")
    for table in ("profiles", "group_profiles"):
        op.drop_index(f"ix_{table}_properties", table_name=table)
        _gin(table, None)


def downgrade() -> None:
    for table in ("profiles", "group_profiles"):
        op.drop_index(f"ix_{table}_properties", table_name=table)
        _gin(table, "jsonb_path_ops")
    op.create_index(
        "ix_profiles_keys", "profiles", [sa.text("profilestore_keys(properties)")], postgresql_using="gin"
    )
