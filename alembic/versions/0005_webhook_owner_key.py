"""webhook owner key: the API key that made a subscription

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 23:45:00

A subscription belongs to the key that made it (two systems of one unit, two keys, do not
list or remove each other's), and it receives the blockers that key created wherever they
go. Subscriptions made before this have none and stay with their unit.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("api_key_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_webhook_subscriptions_api_key_id", "api_keys", ["api_key_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions", schema=None) as batch_op:
        batch_op.drop_constraint("fk_webhook_subscriptions_api_key_id", type_="foreignkey")
        batch_op.drop_column("api_key_id")
