"""officer active: an officer who has left is kept (the timeline names them) but inactive

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 01:45:00

`PATCH /api/v1/officers/{id}` corrects an officer or marks one who left the post inactive:
no longer @-ed in chat groups, assigned blockers or bound to new keys.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("officers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("officers", schema=None) as batch_op:
        batch_op.drop_column("active")
