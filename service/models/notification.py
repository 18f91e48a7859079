"""A message in the transactional outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, text
from sqlmodel import Field, SQLModel

from service.models.types import JSONType, UTCDateTime, utcnow

NOTIFICATION_STATUSES = ("pending", "sent", "failed", "dead")


class Notification(SQLModel, table=True):
    __tablename__ = "notifications"
    __table_args__ = (
        Index(
            "ix_notifications_pending_due",
            "not_before",
            postgresql_where=text("status IN ('pending', 'failed')"),
            sqlite_where=text("status IN ('pending', 'failed')"),
        ),
        Index("ix_notifications_blocker", "blocker_id"),
        Index("ix_notifications_status", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    blocker_id: int | None = Field(default=None, foreign_key="blockers.id")
    channel_id: int = Field(foreign_key="channels.id")
    kind: str = Field(max_length=32)
    event_type: str = Field(default="", max_length=64)
    delivery_id: str = Field(max_length=64, unique=True)
    status: str = Field(default="pending", max_length=16)
    urgent: bool = Field(default=False)
    mentions: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    context: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONType, nullable=False)
    )
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, max_length=2000)
    # Business-time hold (office hours) and real-time retry backoff both land here.
    not_before: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
