"""When a year's holiday schedule changes, move the deadlines that counted working days."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from service.models import Blocker, Event
from workflows import engine
from workflows.context import EngineContext

CALENDAR_ACTOR = engine.Actor(name="system:calendar", is_system=True)
MOVABLE_STATES = ("assigned", "supervised", "deadline")


def _deadline_basis(session: Session, blocker: Blocker) -> tuple[datetime, int] | None:
    """The latest event that set the deadline by a count of working days: (when, how many)."""
    events = session.exec(
        select(Event)
        .where(Event.blocker_id == blocker.id, Event.action.in_(("assign", "verify", "reschedule")))
        .order_by(Event.seq.desc())
    )
    for event in events:
        spec = event.payload.get("deadline_spec") or event.payload.get("deadline")
        if isinstance(spec, dict):
            if spec.get("working_days"):
                basis = event.payload.get("basis_at")
                at = datetime.fromisoformat(basis) if basis else event.at
                return at, int(spec["working_days"])
            return None
        if event.action in ("assign", "verify") and "deadline" in event.payload:
            return None
    return None


def move_deadlines(session: Session, ctx: EngineContext, years: set[int]) -> int:
    """Recount affected open blockers' deadlines through the engine; returns how many moved."""
    cal = ctx.calendars.get(session)
    moved = 0
    blockers = session.exec(
        select(Blocker).where(Blocker.state.in_(MOVABLE_STATES), Blocker.deadline.is_not(None))
    )
    for blocker in list(blockers):
        basis = _deadline_basis(session, blocker)
        if basis is None:
            continue
        at, days = basis
        start = cal.local_date(at)
        if (
            not (
                {start.year, blocker.deadline.year}
                | set(range(start.year, blocker.deadline.year + 1))
            )
            & years
        ):
            continue
        new = cal.add_working_days(start, days)
        if new == blocker.deadline:
            continue
        engine.apply(
            session,
            ctx,
            blocker.id,
            "reschedule",
            CALENDAR_ACTOR,
            {
                "deadline": new.isoformat(),
                "previous_deadline": blocker.deadline.isoformat(),
                "deadline_spec": {"working_days": days},
                "basis_at": at.astimezone(cal.tz).isoformat(),
                "years": sorted(years),
            },
        )
        moved += 1
    return moved
