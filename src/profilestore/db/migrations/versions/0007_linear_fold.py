"""The /engage and /groups write in linear time, with per-request limits on warnings and list work; exact $add
results; an index for the retention sweep of ingestion warnings.

db/sql/0007_fold.sql replaces the fold of 0001_fold.sql (same rules, work linear in the sizes involved, $add
results held to the exactness rule of numbers sent directly); db/sql/0007_apply.sql is the one template of
profilestore_apply_profiles and profilestore_apply_groups, which now take the request's limits on ingestion
warnings and list work.  Downgrading restores the functions of revisions 0001 and 0002 from their files.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import re

from alembic import op

from profilestore.db.migrate import sql_file
from profilestore.db.templates import apply_function

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FOLD = "0007_fold.sql"
APPLY_ARGS = (
    "jsonb, jsonb, boolean, jsonb, double precision, double precision, integer, integer, integer, bigint"
)
OLD_APPLY_ARGS = "jsonb, jsonb, boolean, jsonb, double precision, double precision, integer, integer"
# What 0001_fold.sql created, as DROP FUNCTION names it.
OLD_FOLD = [
    "profilestore_fold(bigint, text, text, boolean, jsonb, jsonb, double precision, double precision, "
    "double precision, double precision, jsonb, double precision, double precision, integer, integer)",
    "profilestore_put(jsonb, text, jsonb, integer, integer, bigint, text, text, text)",
    "profilestore_warn(bigint, text, text, text, text, text)",
    "profilestore_time(jsonb)",
]

# `CREATE FUNCTION name(args)`: the functions of a file, to drop, with their arguments as declared (DROP
# FUNCTION takes modes and names too, and ignores OUT arguments).
_SIGNATURE = re.compile(r"^CREATE FUNCTION (\w+)\(([^)]*)\)", re.MULTILINE)


def _signatures(text: str) -> list[str]:
    return [f"{name}({' '.join(args.split())})" for name, args in _SIGNATURE.findall(text)]


def upgrade() -> None:
    op.execute(f"DROP FUNCTION profilestore_apply_groups({OLD_APPLY_ARGS})")
    op.execute(f"DROP FUNCTION profilestore_apply_profiles({OLD_APPLY_ARGS})")
    for signature in OLD_FOLD:
        op.execute(f"DROP FUNCTION {signature}")
    op.execute(sql_file(FOLD))
    op.execute(apply_function("profile"))
    op.execute(apply_function("group"))
    op.create_index("ix_ingestion_warnings_created_at", "ingestion_warnings", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_ingestion_warnings_created_at", table_name="ingestion_warnings")
    op.execute(f"DROP FUNCTION profilestore_apply_groups({APPLY_ARGS})")
    op.execute(f"DROP FUNCTION profilestore_apply_profiles({APPLY_ARGS})")
    for signature in reversed(_signatures(sql_file(FOLD))):
        op.execute(f"DROP FUNCTION {signature}")
    op.execute(sql_file("0001_fold.sql"))
    op.execute(sql_file("0001_apply_profiles.sql"))
    op.execute(sql_file("0002_apply_groups.sql"))
