"""An outbound webhook subscription of another government system."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from service.models.types import JSONType, UTCDateTime, utcnow


class WebhookSubscription(SQLModel, table=True):
    __tablename__ = "webhook_subscriptions"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2000)
    secret: str = Field(max_length=500)
    events: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    unit_id: int | None = Field(default=None, foreign_key="units.id")
    # The key that made it: it lists and removes it, and gets the blockers it created.
    api_key_id: int | None = Field(default=None, foreign_key="api_keys.id")
    channel_id: int | None = Field(default=None, foreign_key="channels.id")
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
