"""The expression language's SQL helpers (profilestore_keys, safe casts and arithmetic).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import re

from alembic import op

from profilestore.db.migrate import sql_file

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SQL = sql_file("0004_expressions.sql")

# `CREATE FUNCTION name(arg type, ...)`: the signatures to drop, read from the file so the two never disagree.
_SIGNATURE = re.compile(r"^CREATE FUNCTION (\w+)\(([^)]*)\)", re.MULTILINE)


def _signatures(text: str) -> list[str]:
    found = []
    for name, args in _SIGNATURE.findall(text):
        types = ", ".join(arg.split()[-1] for arg in args.split(",") if arg.strip())
        found.append(f"{name}({types})")
    return found


def upgrade() -> None:
    # Straight to the driver: through SQLAlchemy's text(), to_char's "HH24:MI:SS" would be bind parameters.
    op.get_bind().exec_driver_sql(SQL)


def downgrade() -> None:
    # Reverse order: later functions call earlier ones.
    for signature in reversed(_signatures(SQL)):
        op.execute(f"DROP FUNCTION {signature}")
