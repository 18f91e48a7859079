"""单位: the unit tree (province › city › county › township, departments, taskforces, leader offices)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index
from sqlmodel import Field, SQLModel

from service.models.types import JSONType, UTCDateTime, utcnow

UNIT_LEVELS = ("township", "county", "city", "province")
UNIT_KINDS = ("government", "department", "taskforce", "leader", "enterprise")


class Unit(SQLModel, table=True):
    __tablename__ = "units"
    __table_args__ = (Index("ix_units_path", "path"),)

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    level: str = Field(max_length=16)
    kind: str = Field(max_length=16)
    parent_id: int | None = Field(default=None, foreign_key="units.id")
    # Materialised path "/1/4/9/" so a subtree is one indexed prefix query.
    path: str = Field(default="/", max_length=1000)
    # Free tags that the escalation ladder resolves against (general_taskforce,
    # executive_vice_mayor, sector:交通 …): configuration in data, not code.
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
