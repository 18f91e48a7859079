"""event feed order: the transaction that wrote each event

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 23:30:00

On PostgreSQL event ids are handed out as rows are inserted, but transactions commit in
another order: a feed paging on `id > after` could pass an id whose transaction had not
committed yet and never return it. `tx` records the writing transaction
(`txid_current()`); the feed pages in (tx, id) order and only up to the oldest
transaction still running, which no later commit can break (service/api/events.py).
Existing events get 0 and come first. On SQLite, with one writer, commit order is id
order: `tx` stays 0.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NOT NULL DEFAULT 0 is instant on PostgreSQL (no rewrite, no UPDATE of the append-only
    # rows); only later inserts take the transaction id. The release before this one does
    # not name the column, so its inserts get the default too.
    op.add_column(
        "events", sa.Column("tx", sa.BigInteger(), nullable=False, server_default=sa.text("0"))
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE events ALTER COLUMN tx SET DEFAULT txid_current()")
    op.create_index("ix_events_tx_id", "events", ["tx", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_tx_id", table_name="events")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("tx")
