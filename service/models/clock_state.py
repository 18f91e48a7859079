"""The simulation clock's current instant, shared by every process on the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from service.models.types import UTCDateTime


class ClockState(SQLModel, table=True):
    __tablename__ = "clock_state"

    id: int = Field(default=1, primary_key=True, sa_column_kwargs={"autoincrement": False})
    now: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
