"""One delivery attempt of a notification: when, what came back."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index
from sqlmodel import Field, SQLModel

from service.models.types import UTCDateTime, utcnow


class NotificationAttempt(SQLModel, table=True):
    __tablename__ = "notification_attempts"
    # Rate budgets and "too fast" pauses look at the last minutes' attempts only.
    __table_args__ = (Index("ix_notification_attempts_at", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    notification_id: int = Field(foreign_key="notifications.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    status_code: int | None = Field(default=None)
    response_excerpt: str | None = Field(default=None, max_length=500)
    error: str | None = Field(default=None, max_length=1000)
    ok: bool = Field(default=False)
