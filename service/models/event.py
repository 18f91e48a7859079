"""The append-only, hash-chained timeline of a blocker."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from service.models.types import JSONType, UTCDateTime


class Event(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("blocker_id", "seq", name="uq_events_blocker_seq"),)

    # The global id doubles as the cursor of GET /api/v1/events.
    id: int | None = Field(default=None, primary_key=True)
    blocker_id: int = Field(foreign_key="blockers.id")
    seq: int
    at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    actor: str = Field(max_length=100)
    api_key_id: int | None = Field(default=None)
    officer_id: int | None = Field(default=None)
    action: str = Field(max_length=64)
    state_before: str | None = Field(default=None, max_length=32)
    state_after: str = Field(max_length=32)
    payload: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONType, nullable=False)
    )
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


# The transaction that wrote the event (PostgreSQL: txid_current(); SQLite: 0), which orders
# the event feed so that no later commit slips behind a cursor (service/api/events.py).
# Not mapped: the database fills it in and nothing in Python writes it.
EVENT_TX = Column("tx", BigInteger, nullable=False, server_default=text("0"))
Event.__table__.append_column(EVENT_TX)
Index("ix_events_tx_id", EVENT_TX, Event.__table__.c.id)
