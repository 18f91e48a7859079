"""api key rotation: a rotated key's old secret, honoured for a while

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 01:30:00

`POST /api/v1/api-keys/{id}/rotate` gives a key a new secret and keeps its id (the blockers
it reported, its external references, its subscriptions); the old secret's hash is kept
with the moment it stops working, so the system can switch over without a gap.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from service.models.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("previous_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(
            sa.Column("previous_until", UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_api_keys_previous_hash", ["previous_hash"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_api_keys_previous_hash")
        batch_op.drop_column("previous_until")
        batch_op.drop_column("previous_hash")
