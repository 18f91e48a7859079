"""When a year's holiday schedule changes, move the deadlines that counted working days."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from service.models import Blocker, Event, Timer
from workflows import engine
from workflows.context import EngineContext
from workflows.timers import due_at_for

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


def recount_timers(session: Session, ctx: EngineContext, years: set[int]) -> int:
    """Recount pending timers that count working days from entering a state (feedback due,
    climbing the ladder, acknowledge-by) under the changed schedule; returns how many moved.

    Timers counted from the deadline move with it (`move_deadlines`); these keep their
    starting moment and step and only fall due on another day. No event is written: a
    timer is not part of the timeline until it fires."""
    cal = ctx.calendars.get(session)
    first = datetime(min(years), 1, 1, tzinfo=cal.tz)
    pending = session.exec(
        select(Timer, Blocker)
        .join(Blocker, Blocker.id == Timer.blocker_id)
        .where(Timer.status == "pending", Timer.due_at >= first)
    )
    moved = 0
    for timer, blocker in list(pending):
        workflow = ctx.workflows.get(blocker.workflow)
        state = workflow.definition.states.get(timer.payload.get("state")) if workflow else None
        spec = next((t for t in state.timers if t.kind == timer.kind), None) if state else None
        if spec is None or spec.anchor == "deadline" or spec.hours is not None:
            continue
        base = datetime.fromisoformat(timer.payload["base"])
        if not set(range(cal.local_date(base).year, cal.local_date(timer.due_at).year + 1)) & years:
            continue
        due = due_at_for(spec, cal, blocker, base, int(timer.payload.get("n", 1)))
        if due is not None and due != timer.due_at:
            timer.due_at = due
            moved += 1
    return moved
