"""An entry in the escalation queue of a level (升级督办).

Most entries are about one blocker. A unit ranked last in the monthly ranking for
consecutive months (seed 004) is escalated itself: that entry has no blocker, names the
unit in `from_unit_id`, and is unique per (unit, step) instead.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from service.models.types import UTCDateTime, utcnow

ESCALATION_STATUSES = ("open", "acknowledged", "handled", "closed")


class Escalation(SQLModel, table=True):
    __tablename__ = "escalations"
    __table_args__ = (
        UniqueConstraint("blocker_id", "step", name="uq_escalations_blocker_step"),
        Index("ix_escalations_queue", "target_unit_id", "status", "created_at"),
        Index(
            "uq_escalations_unit_step",
            "from_unit_id",
            "step",
            unique=True,
            postgresql_where=text("blocker_id IS NULL"),
            sqlite_where=text("blocker_id IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    blocker_id: int | None = Field(default=None, foreign_key="blockers.id", index=True)
    level: int
    reason: str = Field(max_length=64)
    detail: str = Field(default="", max_length=2000)
    step: str = Field(max_length=64)
    status: str = Field(default="open", max_length=16)
    from_unit_id: int | None = Field(default=None, foreign_key="units.id")
    target_unit_id: int | None = Field(default=None, foreign_key="units.id")
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    acknowledged_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True)
    )
    acknowledged_by: str | None = Field(default=None, max_length=100)
    handled_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    handled_by: str | None = Field(default=None, max_length=100)
    note: str | None = Field(default=None, max_length=2000)
