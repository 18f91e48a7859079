"""The simulation clock (DUBAN_CLOCK=manual only) and the working-day calendar."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from service.api.common import ERROR_RESPONSES, Strict, local_iso
from service.auth import require_administers_everything
from service.deps import Caller, ReadSession, UnitOfWorkRoute, WriteSession
from service.models import CalendarYear
from service.problems import Problem
from service.sim_clock import store_clock
from workflows.briefing import enqueue_monthly_briefing
from workflows.calendar import CALENDAR_YEARS, OUTSIDE_CALENDAR, add_months
from workflows.daily_digest import digest_moments, enqueue_daily_digests
from workflows.rescheduling import move_deadlines, recount_timers
from workflows.sweep import advance_clock

router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES, route_class=UnitOfWorkRoute)

DURATION = re.compile(
    r"^P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
MAX_JUMP = timedelta(days=3660)


def after_duration(now: datetime, text: str, tz: ZoneInfo) -> datetime:
    """`now` moved by an ISO 8601 duration; years and months count on the local calendar."""
    match = DURATION.match(text)
    if not match or text in ("P", "PT") or text.endswith("T"):
        raise Problem(
            422,
            f"advance: '{text}' is not an ISO 8601 duration like P3D, PT2H30M or P1M.",
            field="advance",
        )
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    months = int(parts.pop("years", 0)) * 12 + int(parts.pop("months", 0))
    if months > 120:
        raise Problem(422, "advance: at most ten years at a time.", field="advance")
    try:
        local = now.astimezone(tz)
        day = add_months(local.date(), months)  # the same wall time, months on
        local = local.replace(year=day.year, month=day.month, day=day.day)
        target = local + timedelta(**parts)
    except OverflowError:
        target = datetime.max.replace(tzinfo=tz)
    if target - now > MAX_JUMP:
        raise Problem(422, "advance: at most ten years at a time.", field="advance")
    return target


class ClockMove(Strict):
    advance: str | None = Field(None, min_length=2, max_length=40, examples=["P3D"])
    set: datetime | None = Field(None, examples=["2026-03-09T09:00:00+08:00"])

    @field_validator("set", mode="before")
    @classmethod
    def _text_only(cls, value: object) -> object:
        if value is not None and not isinstance(value, str):
            raise ValueError("give an RFC 3339 string, e.g. 2026-03-09T09:00:00+08:00")
        return value

    @model_validator(mode="after")
    def _one(self) -> ClockMove:
        if (self.advance is None) == (self.set is None):
            raise ValueError("give exactly one of advance or set")
        if self.set is not None and self.set.tzinfo is None:
            raise ValueError("set needs an offset, e.g. 2026-03-09T09:00:00+08:00")
        if self.set is not None and not CALENDAR_YEARS[0] < self.set.year < CALENDAR_YEARS[1]:
            raise ValueError(OUTSIDE_CALENDAR)
        return self


class ClockOut(BaseModel):
    now: str
    mode: str
    fired: int = 0


def _manual(request: Request):
    clock = request.app.state.ctx.clock
    if not clock.manual:
        raise Problem(404, "The simulation clock is off (DUBAN_CLOCK=system).")
    return clock


@router.get("/admin/clock", response_model=ClockOut, tags=["admin"])
def read_clock(request: Request, caller: Caller) -> ClockOut:
    clock = _manual(request)
    return ClockOut(now=local_iso(clock.now(), request.app.state.settings.tz), mode="manual")


@router.post("/admin/clock", response_model=ClockOut, tags=["admin"])
def move_clock(body: ClockMove, request: Request, caller: Caller) -> ClockOut:
    """Move simulated time; every timer due in the jump fires, in order, before this returns."""
    clock = _manual(request)
    require_administers_everything(caller)
    tz = request.app.state.settings.tz
    now = clock.now()
    target = after_duration(now, body.advance, tz) if body.advance is not None else body.set
    if not CALENDAR_YEARS[0] < target.astimezone(tz).year < CALENDAR_YEARS[1]:
        raise Problem(422, f"advance: {OUTSIDE_CALENDAR}", field="advance")
    db, ctx = request.app.state.db, request.app.state.ctx
    with clock.lock:  # one mover at a time; the background tick waits (a re-entrant lock)
        with db.unit_of_work(readonly=True) as session:
            stops = digest_moments(session, ctx, now, target)
        fired = 0
        for stop in [*stops, target]:  # each working day's 09:00 on the way, as if running
            fired += advance_clock(db, ctx, stop)
            with db.unit_of_work() as session:
                enqueue_daily_digests(session, ctx)
                enqueue_monthly_briefing(session, ctx)
        store_clock(db, clock.now())
    return ClockOut(
        now=local_iso(clock.now(), request.app.state.settings.tz), mode="manual", fired=fired
    )


class CalendarIn(Strict):
    # Required: a PUT replaces the year, and `{}` wiping the official schedule by mistake
    # would move every deadline in it. `[]` says "no holidays" on purpose.
    holidays: list[date] = Field(max_length=366, examples=[["2027-01-01"]])
    workdays: list[date] | None = Field(
        default_factory=list, max_length=366, examples=[["2027-02-20"]]
    )


class CalendarOut(BaseModel):
    year: int
    source: str
    holidays: list[str]
    workdays: list[str]
    working_days: int
    moved_blockers: int | None = None


def _year(year: int) -> int:
    if not CALENDAR_YEARS[0] <= year <= CALENDAR_YEARS[1]:
        raise Problem(404, f"There is no calendar for {year}; years 2000–2100 are kept.")
    return year


@router.get("/calendar/{year}", response_model=CalendarOut, tags=["calendar"])
def get_calendar(year: int, request: Request, session: ReadSession, caller: Caller) -> CalendarOut:
    """The year's working-day calendar and where it comes from (database, official, weekends-only)."""
    cal = request.app.state.ctx.calendars.get(session)
    return CalendarOut(**cal.year_info(_year(year)))


@router.put("/calendar/{year}", response_model=CalendarOut, tags=["calendar"])
def put_calendar(
    year: int, body: CalendarIn, request: Request, session: WriteSession, caller: Caller
) -> CalendarOut:
    """Load or correct a year's holidays and make-up working days (admin); moves affected deadlines."""
    require_administers_everything(caller)
    _year(year)
    for name, days in (("holidays", body.holidays), ("workdays", body.workdays)):
        wrong = [d.isoformat() for d in days if d.year != year]
        if wrong:
            raise Problem(422, f"{name}: {', '.join(wrong[:3])} not in {year}.", field=name)
    weekdays = [d for d in body.workdays if d.weekday() < 5]
    if weekdays:
        # A no-op that is almost always a typo, or the two lists swapped: a make-up working
        # day (调休上班) is a weekend day that is worked.
        day = weekdays[0]
        raise Problem(
            422,
            f"workdays: {day.isoformat()} is a {day.strftime('%A')}, a working day already; "
            "a make-up working day (调休上班) is a Saturday or Sunday that is worked. "
            "Were holidays and workdays swapped?",
            field="workdays",
        )
    both = set(body.holidays) & set(body.workdays)
    if both:
        raise Problem(
            422, f"workdays: {sorted(both)[0]} is also listed as a holiday.", field="workdays"
        )
    row = session.get(CalendarYear, year)
    values = {
        "holidays": sorted(d.isoformat() for d in body.holidays),
        "workdays": sorted(d.isoformat() for d in body.workdays),
        "updated_at": request.app.state.ctx.clock.now(),
    }
    if row is None:
        try:
            with session.begin_nested():  # another PUT may be creating the year right now
                session.add(CalendarYear(year=year, **values))
        except IntegrityError:
            row = session.get(CalendarYear, year, populate_existing=True, with_for_update=True)
    if row is not None:
        for key, value in values.items():
            setattr(row, key, value)
    return _changed(session, request, year)


@router.delete(
    "/calendar/{year}",
    response_model=CalendarOut,
    tags=["calendar"],
    responses={404: ERROR_RESPONSES[404]},
)
def delete_calendar(
    year: int, request: Request, session: WriteSession, caller: Caller
) -> CalendarOut:
    """Drop the year loaded with PUT (admin): it follows the official schedule again (or
    weekends only, for a year not yet announced); moves affected deadlines."""
    require_administers_everything(caller)
    row = session.get(CalendarYear, _year(year), with_for_update=True)
    if row is None:
        source = request.app.state.ctx.calendars.get(session).year_info(year)["source"]
        raise Problem(
            404, f"Nothing was loaded for {year}; it already follows the {source} calendar."
        )
    session.delete(row)
    return _changed(session, request, year)


def _changed(session: Session, request: Request, year: int) -> CalendarOut:
    """After a year's calendar changed: move the deadlines and timers that it moves."""
    session.flush()
    ctx = request.app.state.ctx
    ctx.calendars.invalidate()
    moved = move_deadlines(session, ctx, {year})
    recount_timers(session, ctx, {year})
    ctx.calendars.invalidate()
    cal = ctx.calendars.get(session)
    return CalendarOut(**cal.year_info(year), moved_blockers=moved)
