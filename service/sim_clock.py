"""The simulation clock's time in the database: where a restart resumes, and what several
replicas share (each follows the time the last move stored)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from service.db import Database
from service.models import ClockState


def saved_clock(db: Database) -> datetime | None:
    """The simulated time a previous process left (shared by `duban sweep` / `dispatch`)."""
    try:
        with db.unit_of_work(readonly=True) as session:
            state = session.get(ClockState, 1)
    except SQLAlchemyError:
        return None  # not migrated yet
    return state.now if state else None


def store_clock(db: Database, instant: datetime) -> None:
    """Record the simulated time for the other replicas (and the next start) to follow."""
    with db.unit_of_work() as session:
        state = session.get(ClockState, 1)
        if state is None:
            session.add(ClockState(id=1, now=instant))
        else:
            state.now = instant


def follow_shared_clock(db: Database, clock: Any) -> None:
    """With the simulation clock, every replica keeps the time the last move stored, so a
    replica that was not told of a jump neither stamps the timeline in the past nor, told
    to move, moves from a stale time. Waits for a jump under way in this process."""
    with clock.lock:
        stored = saved_clock(db)
        if stored is not None and stored != clock.now():
            clock.set(stored)
