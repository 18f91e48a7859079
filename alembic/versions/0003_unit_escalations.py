"""unit escalations: an entry in the queue about a unit ranked last, not one blocker

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 10:00:00

A unit ranked last in the monthly ranking for consecutive months is escalated itself
(domain.md, seed 004): its entry has no blocker and is unique per (unit, step).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UNIT_ENTRY = sa.text("blocker_id IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.alter_column("blocker_id", existing_type=sa.Integer(), nullable=True)
        batch_op.create_index(
            "uq_escalations_unit_step",
            ["from_unit_id", "step"],
            unique=True,
            postgresql_where=UNIT_ENTRY,
            sqlite_where=UNIT_ENTRY,
        )


def downgrade() -> None:
    op.execute("DELETE FROM escalations WHERE blocker_id IS NULL")
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.drop_index("uq_escalations_unit_step")
        batch_op.alter_column("blocker_id", existing_type=sa.Integer(), nullable=False)
