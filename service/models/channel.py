"""Where a unit's notifications go: a chat robot, a signed webhook or e-mail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from service.models.types import UTCDateTime, utcnow

CHANNEL_KINDS = ("wecom", "dingtalk", "feishu", "webhook", "email")


class Channel(SQLModel, table=True):
    __tablename__ = "channels"

    id: int | None = Field(default=None, primary_key=True)
    unit_id: int = Field(foreign_key="units.id", index=True)
    kind: str = Field(max_length=16)
    url: str = Field(max_length=2000)
    secret: str | None = Field(default=None, max_length=500)
    enabled: bool = Field(default=True)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
