"""API keys: bound to a unit (and optionally an officer), with scopes; stored hashed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from service.models.types import JSONType, UTCDateTime, utcnow

SCOPES = ("read", "write", "admin")


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    unit_id: int = Field(foreign_key="units.id", index=True)
    officer_id: int | None = Field(default=None, foreign_key="officers.id")
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True)
    # A rotated key's old secret, honoured until `previous_until` (real time), so that the
    # system using it can switch without a gap; the key keeps its id and so its blockers.
    previous_hash: str | None = Field(default=None, max_length=64, index=True)
    previous_until: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True)
    )
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
