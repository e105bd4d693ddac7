"""A rotated API secret may stay valid for a grace period (`projects rotate-secret NAME --grace 1h`): the
previous secret's hash and the end of its grace, beside the current one.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("previous_secret_hash", sa.Text(), nullable=True))
    op.add_column("projects", sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("projects", "previous_secret_until")
    op.drop_column("projects", "previous_secret_hash")
