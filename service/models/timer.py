"""A due moment stored as a row; the sweep fires it through the engine."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from service.models.types import JSONType, UTCDateTime

TIMER_STATUSES = ("pending", "fired", "cancelled")


class Timer(SQLModel, table=True):
    __tablename__ = "timers"
    __table_args__ = (
        # A second firing of the same step is impossible even if two sweeps meet.
        UniqueConstraint("blocker_id", "kind", "step", name="uq_timers_blocker_kind_step"),
        # The sweep's claim order: a batch is read in order, not sorted out of every due
        # timer. Lookups by blocker use the unique key above, which starts with blocker_id.
        Index(
            "ix_timers_pending_due",
            "due_at",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    blocker_id: int = Field(foreign_key="blockers.id")
    kind: str = Field(max_length=64)
    step: str = Field(max_length=64)
    due_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    status: str = Field(default="pending", max_length=16)
    urgent: bool = Field(default=False)
    payload: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONType, nullable=False)
    )
    fired_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
