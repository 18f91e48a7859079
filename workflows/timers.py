"""Timers as rows: plan them from the definition, cancel them, and sweep the due ones.

Nothing about timers is held in memory between sweeps; the sweep claims due rows in
bounded batches (FOR UPDATE SKIP LOCKED on PostgreSQL, the single writer on SQLite),
re-checks each, and fires it through the engine's one gate.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, select

from service.models import Timer
from workflows.calendar import MAX_DAYS, WorkingDayCalendar
from workflows.definition import Definition, TimerSpec

log = logging.getLogger("duban.timers")
MEMO_MAX = 4096


def _at(cal: WorkingDayCalendar, day, at: str) -> datetime:
    return cal.end_of_day(day) if at == "end" else cal.at_local(day, at)


def due_at_for(
    spec: TimerSpec, cal: WorkingDayCalendar, blocker: Any, base: datetime, step: int
) -> datetime | None:
    """When step `step` (1-based) of this timer falls due, or None if it does not apply."""
    if spec.anchor == "deadline":
        if blocker.deadline is None or blocker.due_at is None:
            return None
        if spec.working_days == 0 or spec.hours == 0:
            return blocker.due_at
        if spec.hours is not None:
            return blocker.due_at + timedelta(hours=spec.hours)
        return _from_deadline(cal, spec.working_days or 0, spec.at, blocker.deadline)
    if spec.hours is not None:
        return base + timedelta(hours=spec.hours * step)
    repeat = spec.repeat.working_days if spec.repeat is not None else None
    return _after_entering(cal, spec.working_days or 0, spec.at, repeat, base, step)


def _memoised(cal: WorkingDayCalendar, key: tuple, compute) -> datetime | None:
    # Memoised on the calendar: a sweep batch plans the same step from the same moment (or
    # the same deadline) for many blockers. Bounded, and gone with the calendar when the
    # store reloads it.
    found = cal.memo.get(key)
    if isinstance(found, datetime):
        return found
    due = compute()
    if due is not None and len(cal.memo) < MEMO_MAX:
        cal.memo[key] = due
    return due


def _from_deadline(cal: WorkingDayCalendar, days: int, at: str, deadline) -> datetime | None:
    def compute() -> datetime:
        if days < 0:
            return _at(cal, cal.subtract_working_days(deadline, -days), at)
        return _at(cal, cal.add_working_days(deadline, days), at)

    return _memoised(cal, ("from_deadline", days, at, deadline), compute)


def _after_entering(
    cal: WorkingDayCalendar, days: int, at: str, repeat: int | None, base: datetime, step: int
) -> datetime | None:
    def compute() -> datetime | None:
        if days + 1 + (repeat or 0) * (step - 1) > MAX_DAYS:
            return None  # a repeat some 40 years on: it stops, rather than fail every sweep
        start = cal.local_date(base)
        first = cal.add_working_days(start, days)
        if _at(cal, first, at) <= base:
            # e.g. "acknowledge the same working day" assigned after hours: the next one.
            first = cal.add_working_days(start, days + 1)
        if step > 1 and repeat is not None:
            # Later steps count from the first step's day, so a 0-day first step that moved
            # to the next working day (after hours, weekend) never falls due with step 2.
            first = cal.add_working_days(first, repeat * (step - 1))
        return _at(cal, first, at)

    return _memoised(cal, ("after_entering", days, at, repeat, base, step), compute)


def plan_state_timers(
    definition: Definition,
    cal: WorkingDayCalendar,
    blocker: Any,
    state: str,
    entered_at: datetime,
    enter_seq: int,
    now: datetime,
    kinds: set[str] | None = None,
) -> list[dict[str, Any]]:
    """The timer rows of `state` for a blocker that entered it at `entered_at`."""
    timers = []
    for spec in definition.states[state].timers:
        if kinds is not None and spec.kind not in kinds:
            continue
        timer = make_timer(spec, cal, blocker, state, entered_at, enter_seq, 1)
        if timer is None:
            continue
        # A reminder before the deadline that is already in the past no longer applies;
        # the deadline itself always does.
        if spec.anchor == "deadline" and timer["due_at"] <= now and spec.working_days != 0:
            continue
        timers.append(timer)
    return timers


def make_timer(
    spec: TimerSpec,
    cal: WorkingDayCalendar,
    blocker: Any,
    state: str,
    base: datetime,
    enter_seq: int,
    step: int,
) -> dict[str, Any] | None:
    """Step `step` of a timer as a row of `timers`, or None if it does not apply."""
    due = due_at_for(spec, cal, blocker, base, step)
    if due is None:
        return None
    return {
        "blocker_id": blocker.id,
        "kind": spec.kind,
        "step": f"{enter_seq}.{step}",
        "due_at": due,
        "status": "pending",
        "urgent": spec.urgent,
        "payload": {
            "state": state,
            "action": spec.action,
            "n": step,
            "base": base.isoformat(),
            "enter_seq": enter_seq,
        },
        "fired_at": None,
    }


def cancel_pending(session: Session, blocker_id: int, kinds: set[str] | None = None) -> None:
    stmt = update(Timer).where(Timer.blocker_id == blocker_id, Timer.status == "pending")
    if kinds is not None:
        stmt = stmt.where(Timer.kind.in_(kinds))
    session.execute(stmt.values(status="cancelled").execution_options(synchronize_session=False))


def pending_timers(session: Session, blocker_id: int) -> list[Timer]:
    return list(
        session.exec(
            select(Timer)
            .where(Timer.blocker_id == blocker_id, Timer.status == "pending")
            .order_by(Timer.due_at, Timer.id)
        )
    )


def next_due(session: Session, until: datetime | None = None) -> datetime | None:
    query = select(func.min(Timer.due_at)).where(Timer.status == "pending")
    if until is not None:
        query = query.where(Timer.due_at <= until)
    value = session.exec(query).one()
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value
