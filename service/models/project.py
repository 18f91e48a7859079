"""项目: a major investment project, with its progress light (红黄绿灯)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Column, Numeric
from sqlmodel import Field, SQLModel

from service.models.types import UTCDateTime, utcnow


class Project(SQLModel, table=True):
    __tablename__ = "projects"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=300)
    category: str = Field(max_length=64)
    county_unit_id: int = Field(foreign_key="units.id", index=True)
    enterprise: str | None = Field(default=None, max_length=300)
    leader_officer_id: int | None = Field(default=None, foreign_key="officers.id")
    total_investment: Decimal | None = Field(default=None, sa_column=Column(Numeric(16, 2)))
    light: str = Field(default="green", max_length=8)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
