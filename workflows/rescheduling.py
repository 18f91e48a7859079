"""When a year's holiday schedule changes, move the deadlines that counted working days."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from service.models import Blocker, Event, Timer
from workflows import engine
from workflows.calendar import WorkingDayCalendar, add_months
from workflows.context import EngineContext
from workflows.effects import calendar_warnings
from workflows.timers import due_at_for

CALENDAR_ACTOR = engine.Actor(name="system:calendar", is_system=True)
# A blocker already in `deadline` keeps it: its deadline passed under the schedule of the
# day, and the escalation made then is not undone by a schedule loaded later.
MOVABLE_STATES = ("assigned", "supervised")
# How far before its deadline a timer counted back from it may fall (reminders).
BEFORE_DEADLINE = timedelta(days=60)


def _deadline_rules(session: Session, blocker: Blocker) -> list[tuple[datetime, dict[str, Any]]]:
    """The rules that gave the blocker its deadline: (from when, spec), newest first.

    Usually one: the assignment's, or a return's. A return that kept the later deadline it
    had (a return does not cut the unit's time) gave the later of its own rule and the one
    before it, so both are listed. Empty when the deadline was set some other way."""
    rules: list[tuple[datetime, dict[str, Any]]] = []
    events = session.exec(
        select(Event)
        .where(Event.blocker_id == blocker.id, Event.action.in_(("assign", "verify")))
        .order_by(Event.seq.desc())
    )
    for event in events:
        spec = event.payload.get("deadline_spec") or event.payload.get("deadline")
        if not isinstance(spec, dict):
            if "deadline" in event.payload:
                break
            continue  # a satisfied verification: it did not set the deadline
        rules.append((event.at, spec))
        if not event.payload.get("deadline_kept"):
            break
    return rules


def _deadline_by(cal: WorkingDayCalendar, at: datetime, spec: dict[str, Any]) -> date | None:
    """The deadline a rule gives under the calendar as it now stands."""
    start = cal.local_date(at)
    if spec.get("working_days"):
        return cal.add_working_days(start, int(spec["working_days"]))
    if spec.get("months"):
        return cal.next_working_day(add_months(start, int(spec["months"])), include_self=True)
    if spec.get("date"):
        return date.fromisoformat(str(spec["date"]))
    return None


def move_deadlines(session: Session, ctx: EngineContext, years: set[int]) -> int:
    """Recount affected open blockers' deadlines through the engine; returns how many moved.
    Those that stay get their calendar warnings brought up to date."""
    cal = ctx.calendars.get(session)
    today = cal.local_date(ctx.clock.now())
    moved = 0
    blockers = session.exec(
        select(Blocker).where(Blocker.state.in_(MOVABLE_STATES), Blocker.deadline.is_not(None))
    )
    for blocker in list(blockers):
        rules = _deadline_rules(session, blocker)
        earliest = min([cal.local_date(at) for at, _ in rules] + [blocker.deadline])
        if not set(range(earliest.year, blocker.deadline.year + 1)) & years:
            continue
        # (the deadline each rule now gives, the rule): the later one stands.
        given = [(d, rule) for rule in rules if (d := _deadline_by(cal, *rule)) is not None]
        # No rule (a deadline set some other way): it stays, and only its warnings change.
        new, (at, spec) = max(given, key=lambda p: p[0], default=(blocker.deadline, (None, None)))
        # Never into the past: a correction that takes days back leaves the unit today, not
        # an escalation for a deadline it could not see coming.
        new = max(new, min(blocker.deadline, today))
        if new == blocker.deadline:
            blocker.warnings = calendar_warnings(cal, today, blocker.deadline)
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
                "deadline_spec": spec,
                "basis_at": at.astimezone(cal.tz).isoformat(),
                "years": sorted(years),
            },
        )
        moved += 1
    return moved


def recount_timers(session: Session, ctx: EngineContext, years: set[int]) -> int:
    """Recount pending timers that count working days under the changed schedule: from
    entering a state (feedback due, climbing the ladder, acknowledge-by), or back from a
    deadline that did not move (the reminders before it); returns how many moved.

    They keep their starting moment and step and only fall due on another day. A reminder
    before the deadline that now falls in the past no longer applies, as when it is first
    planned; any other timer is never moved into the past. No event is written: a timer is
    not part of the timeline until it fires."""
    cal = ctx.calendars.get(session)
    now = ctx.clock.now()
    first = datetime(min(years), 1, 1, tzinfo=cal.tz) - BEFORE_DEADLINE
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
        if spec is None or spec.hours is not None:
            continue
        base = datetime.fromisoformat(timer.payload["base"])
        if spec.anchor == "deadline":  # from the reminder to the deadline it counts back from
            if blocker.deadline is None:
                continue
            span = (cal.local_date(timer.due_at).year, blocker.deadline.year)
        else:  # from entering the state to the timer
            span = (cal.local_date(base).year, cal.local_date(timer.due_at).year)
        if not set(range(min(span), max(span) + 1)) & years:
            continue
        due = due_at_for(spec, cal, blocker, base, int(timer.payload.get("n", 1)))
        if due is None or due == timer.due_at:
            continue
        if spec.anchor == "deadline" and spec.working_days != 0 and due <= now:
            timer.status = "cancelled"
        elif due <= now:
            # Never into the past (as deadlines): a correction that takes days back does not
            # tell a unit at once that its feedback is late, nor escalate it; the timer keeps
            # its own moment, still to come.
            continue
        else:
            timer.due_at = due
        moved += 1
    return moved
