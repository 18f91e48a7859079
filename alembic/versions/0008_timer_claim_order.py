"""timer claim order: the pending timers' index in the sweep's claim order

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 10:30:00

The sweep claims due timers `ORDER BY due_at, id LIMIT n`. With the pending timers indexed
on `due_at` alone, PostgreSQL read and sorted every due timer for each batch when many fell
due at the same moment (100,000 deadlines at 23:59:59: 79 ms a claim, once per batch of
1,000). Indexed on (due_at, id) the claim reads its batch in order (1 ms). SQLite's index
already ends with the rowid, which is `id`; it is rebuilt the same way for one schema.

`ix_timers_blocker_id` goes: `uq_timers_blocker_kind_step` starts with `blocker_id` and
serves every lookup by blocker, and each timer written or fired updated both.

On PostgreSQL the index is not built `CONCURRENTLY` (Alembic runs each migration in a
transaction): writes to `timers` wait while it is built.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.drop_index("ix_timers_pending_due")
        batch_op.drop_index("ix_timers_blocker_id")
        batch_op.create_index(
            "ix_timers_pending_due",
            ["due_at", "id"],
            unique=False,
            postgresql_where=PENDING,
            sqlite_where=PENDING,
        )


def downgrade() -> None:
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.drop_index("ix_timers_pending_due")
        batch_op.create_index("ix_timers_blocker_id", ["blocker_id"], unique=False)
        batch_op.create_index(
            "ix_timers_pending_due",
            ["due_at"],
            unique=False,
            postgresql_where=PENDING,
            sqlite_where=PENDING,
        )
