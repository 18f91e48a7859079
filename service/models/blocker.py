"""问题事项: a blocker on a project, moving through a workflow definition."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, Index, text
from sqlmodel import Field, SQLModel

from service.models.types import JSONType, UTCDateTime, utcnow

AUTHORITY_LEVELS = ("county", "city", "province")


# Overdue: still open and unresolved with the deadline instant reached. At `due_at` itself
# the deadline timer fires (state `deadline`), so the blocker is overdue from that instant.
OVERDUE_STATES = ("assigned", "supervised", "deadline")
CLOSED_STATES = ("closed", "withdrawn")  # finished; every other state is open


def is_overdue(blocker: Blocker, now: datetime) -> bool:
    return bool(blocker.due_at and blocker.state in OVERDUE_STATES and now >= blocker.due_at)


class Blocker(SQLModel, table=True):
    __tablename__ = "blockers"
    __table_args__ = (
        Index("ix_blockers_unit_state_due", "unit_id", "state", "due_at"),
        Index("ix_blockers_state_due", "state", "due_at"),
        Index("ix_blockers_project", "project_id"),
        Index(
            "uq_blockers_source_external_ref",
            "source",
            "external_ref",
            unique=True,
            postgresql_where=text("external_ref IS NOT NULL"),
            sqlite_where=text("external_ref IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id")
    title: str = Field(max_length=300)
    description: str = Field(default="", max_length=10000)
    category: str = Field(max_length=64)
    authority_level: str = Field(default="county", max_length=16)
    reported_by: str | None = Field(default=None, max_length=200)
    external_ref: str | None = Field(default=None, max_length=200)
    # Who pushed it in: "key:<id>" or "admin"; external_ref is unique per source.
    source: str = Field(default="admin", max_length=64)
    created_by_key_id: int | None = Field(default=None, foreign_key="api_keys.id")
    workflow: str = Field(default="blocker", max_length=64)
    state: str = Field(default="collected", max_length=32)
    escalation_level: int = Field(default=0)
    unit_id: int | None = Field(default=None, foreign_key="units.id")
    officer_id: int | None = Field(default=None, foreign_key="officers.id")
    assisting_unit_ids: list[int] = Field(
        default_factory=list, sa_column=Column(JSONType, nullable=False)
    )
    deadline: date | None = Field(default=None)
    due_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    complexity: str = Field(default="ordinary", max_length=16)
    return_count: int = Field(default=0)
    failed_verifications: int = Field(default=0)
    version: int = Field(default=1)
    last_seq: int = Field(default=0)
    last_hash: str = Field(default="", max_length=64)
    warnings: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    closed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
