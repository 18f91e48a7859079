"""责任人: an officer of a unit, @-ed by mobile in chat groups."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Column, true
from sqlmodel import Field, SQLModel

from service.models.types import UTCDateTime, utcnow

OFFICER_ROLES = ("lead", "liaison", "leader", "staff")


class Officer(SQLModel, table=True):
    __tablename__ = "officers"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    mobile: str = Field(max_length=20)
    unit_id: int = Field(foreign_key="units.id", index=True)
    role: str = Field(max_length=16)
    wecom_userid: str | None = Field(default=None, max_length=64)
    dingtalk_userid: str | None = Field(default=None, max_length=64)
    # False once the officer has left the post: no longer @-ed, assigned or bound to keys.
    active: bool = Field(
        default=True, sa_column=Column(Boolean, nullable=False, server_default=true())
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
