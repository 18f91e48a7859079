"""Tests for workflows.calendar (working-day arithmetic, Asia/Shanghai)."""

import time as _time
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workflows.calendar import MAX_DAYS, WorkingDayCalendar, YearOverride
from workflows.definition import load_all
from workflows.timers import make_timer

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def cal() -> WorkingDayCalendar:
    return WorkingDayCalendar()


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


# --------------------------------------------------------------------------- package facts
def test_package_range_is_2004_to_2026():
    assert chinese_calendar.is_workday(date(2004, 1, 2))
    assert chinese_calendar.is_workday(date(2026, 10, 10))
    for d in (date(2003, 12, 31), date(2027, 1, 1)):
        with pytest.raises(NotImplementedError):
            chinese_calendar.is_workday(d)


def test_2026_official_schedule_in_package():
    # State Council 2026 schedule: Spring Festival Feb 15-23, make-up Sat Feb 14 and Feb 28;
    # Mid-Autumn Sep 25-27 with make-up Sun Sep 20; National Day Oct 1-7, make-up Sat Oct 10.
    for d in (date(2026, 2, 14), date(2026, 2, 28), date(2026, 9, 20), date(2026, 10, 10)):
        assert d.weekday() >= 5 and chinese_calendar.is_workday(d)
    for offset in range(9):
        assert chinese_calendar.is_holiday(date(2026, 2, 15) + timedelta(days=offset))
    for day in range(1, 8):
        assert chinese_calendar.is_holiday(date(2026, 10, day))


@pytest.mark.parametrize("year", [2025, 2026])
def test_matches_package_day_by_day(cal, year):
    d = date(year, 1, 1)
    while d.year == year:
        assert cal.is_working_day(d) == chinese_calendar.is_workday(d), d
        d += timedelta(days=1)


# --------------------------------------------------------------------------- basic arithmetic
def test_assignment_day_does_not_count(cal):
    assert cal.add_working_days(date(2025, 3, 3), 1) == date(2025, 3, 4)  # Mon -> Tue
    assert cal.add_working_days(date(2025, 3, 7), 1) == date(2025, 3, 10)  # Fri -> Mon
    assert cal.add_working_days(date(2025, 3, 8), 1) == date(2025, 3, 10)  # Sat -> Mon
    assert cal.add_working_days(date(2025, 3, 3), 5) == date(2025, 3, 10)


def test_zero_days_is_start_or_next_working_day(cal):
    assert cal.add_working_days(date(2025, 3, 3), 0) == date(2025, 3, 3)
    assert cal.add_working_days(date(2025, 3, 8), 0) == date(2025, 3, 10)
    assert cal.add_working_days(date(2026, 2, 18), 0) == date(2026, 2, 24)


def test_spring_festival_2026(cal):
    start = date(2026, 2, 12)  # Thursday
    assert cal.add_working_days(start, 1) == date(2026, 2, 13)
    assert cal.add_working_days(start, 2) == date(2026, 2, 14)  # make-up Saturday
    assert cal.add_working_days(start, 3) == date(2026, 2, 24)  # after the 9-day holiday
    assert cal.add_working_days(start, 7) == date(2026, 2, 28)  # make-up Saturday
    assert cal.add_working_days(start, 8) == date(2026, 3, 2)
    assert cal.working_days_between(start, date(2026, 2, 24)) == 3
    assert cal.subtract_working_days(date(2026, 2, 24), 1) == date(2026, 2, 14)
    assert cal.subtract_working_days(date(2026, 2, 24), 3) == date(2026, 2, 12)


def test_national_day_2026(cal):
    assert cal.is_working_day(date(2026, 9, 20))  # make-up Sunday
    assert not cal.is_working_day(date(2026, 9, 25))  # Mid-Autumn (Friday)
    assert cal.add_working_days(date(2026, 9, 18), 1) == date(2026, 9, 20)
    start = date(2026, 9, 30)  # Wednesday
    assert cal.add_working_days(start, 1) == date(2026, 10, 8)
    assert cal.add_working_days(start, 3) == date(2026, 10, 10)  # make-up Saturday
    assert cal.add_working_days(start, 4) == date(2026, 10, 12)
    assert cal.working_days_between(start, date(2026, 10, 12)) == 4
    assert cal.working_days_between(date(2026, 10, 12), start) == -4
    assert cal.working_days_between(start, start) == 0
    assert cal.subtract_working_days(date(2026, 10, 8), 1) == date(2026, 9, 30)


def test_make_up_saturday_is_working_day(cal):
    sat = date(2026, 10, 10)
    assert sat.weekday() == 5
    assert cal.is_working_day(sat)
    assert cal.next_working_day(date(2026, 10, 9)) == sat
    assert cal.next_working_day(sat, include_self=True) == sat
    assert cal.next_working_day(sat) == date(2026, 10, 12)
    assert not cal.is_working_day(date(2026, 10, 17))  # ordinary Saturday


def test_invalid_n(cal):
    with pytest.raises(ValueError):
        cal.add_working_days(date(2026, 1, 5), -1)
    with pytest.raises(ValueError):
        cal.add_working_days(date(2026, 1, 5), 10_001)
    with pytest.raises(ValueError):
        cal.subtract_working_days(date(2026, 1, 5), 0)
    assert cal.add_working_days(date(2026, 1, 5), 10_000).year > 2060


# --------------------------------------------------------------------------- overrides
def test_year_boundary_into_2027_without_data(cal):
    assert cal.source(2026) == "official"
    assert cal.source(2027) == "weekends-only"
    assert cal.source(2003) == "weekends-only"
    # 2027-01-01 is a Friday; without data it is an ordinary working day.
    assert cal.add_working_days(date(2026, 12, 31), 1) == date(2027, 1, 1)
    assert cal.add_working_days(date(2026, 12, 31), 2) == date(2027, 1, 4)
    assert cal.years_without_official_data(date(2026, 12, 20), date(2027, 1, 10)) == [2027]
    assert cal.years_without_official_data(date(2026, 1, 1), date(2026, 12, 31)) == []
    info = cal.year_info(2027)
    assert info["holidays"] == [] and info["workdays"] == []
    assert info["working_days"] == 261


def test_override_2027():
    base = WorkingDayCalendar()
    ov = YearOverride(holidays=[date(2027, 1, 1)], workdays=[date(2027, 1, 9)])
    cal = base.with_override(2027, ov)
    assert isinstance(cal.with_override(2027, ov), WorkingDayCalendar)
    assert ov.holidays == frozenset({date(2027, 1, 1)})
    assert cal.source(2027) == "database"
    assert base.source(2027) == "weekends-only"  # original calendar untouched
    assert cal.add_working_days(date(2026, 12, 31), 1) == date(2027, 1, 4)
    assert cal.is_working_day(date(2027, 1, 9))  # make-up Saturday
    assert cal.add_working_days(date(2027, 1, 8), 1) == date(2027, 1, 9)
    assert cal.years_without_official_data(date(2026, 12, 20), date(2027, 1, 10)) == []
    assert cal.year_info(2027) == {
        "year": 2027,
        "source": "database",
        "holidays": ["2027-01-01"],
        "workdays": ["2027-01-09"],
        "working_days": 261,
    }
    removed = cal.with_override(2027, None)
    assert removed.source(2027) == "weekends-only"
    assert removed.add_working_days(date(2026, 12, 31), 1) == date(2027, 1, 1)


def test_override_takes_precedence_over_official_data():
    cal = WorkingDayCalendar({2026: YearOverride(frozenset(), frozenset())})
    assert cal.source(2026) == "database"
    assert not cal.is_working_day(date(2026, 10, 10))
    assert cal.is_working_day(date(2026, 10, 1))


def test_override_with_dates_of_another_year_is_rejected():
    with pytest.raises(ValueError):
        WorkingDayCalendar({2027: YearOverride(frozenset({date(2026, 12, 31)}), frozenset())})


def test_year_info_2026(cal):
    info = cal.year_info(2026)
    assert info["source"] == "official"
    assert info["workdays"] == [
        "2026-01-04",
        "2026-02-14",
        "2026-02-28",
        "2026-05-09",
        "2026-09-20",
        "2026-10-10",
    ]
    assert "2026-02-16" in info["holidays"] and "2026-10-07" in info["holidays"]
    assert "2026-02-15" not in info["holidays"]  # a Sunday: not listed
    assert len(info["holidays"]) == 19
    assert info["working_days"] == 261 - 19 + 6


# --------------------------------------------------------------------------- time zone
def test_deadline_after_returns_local_end_of_day_in_utc(cal):
    # 2026-02-13 20:00Z is Saturday 2026-02-14 04:00 in Shanghai (a make-up working day).
    due_date, due = cal.deadline_after(datetime(2026, 2, 13, 20, 0, tzinfo=UTC), 1)
    assert due_date == date(2026, 2, 24)
    assert due == datetime(2026, 2, 24, 15, 59, 59, tzinfo=UTC)
    assert due.utcoffset() == timedelta(0)
    due_date, due = cal.deadline_after(local(2025, 3, 7, 23, 30), 1)  # Friday night
    assert (due_date, due) == (date(2025, 3, 10), datetime(2025, 3, 10, 15, 59, 59, tzinfo=UTC))
    with pytest.raises(ValueError):
        cal.deadline_after(datetime(2025, 3, 7, 12, 0), 1)  # naive


def test_local_helpers(cal):
    assert cal.tz == SHANGHAI
    assert cal.local_date(datetime(2025, 3, 2, 16, 30, tzinfo=UTC)) == date(2025, 3, 3)
    assert cal.at_local(date(2025, 3, 3), "09:00") == datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
    assert cal.end_of_day(date(2025, 3, 3)) == datetime(2025, 3, 3, 15, 59, 59, tzinfo=UTC)


def test_office_hours(cal):
    assert cal.in_office_hours(local(2025, 3, 3, 8, 30))
    assert not cal.in_office_hours(local(2025, 3, 3, 18, 0))
    assert not cal.in_office_hours(local(2025, 3, 8, 10, 0))  # Saturday
    assert cal.in_office_hours(local(2026, 2, 14, 10, 0))  # make-up Saturday
    # Saturday 03:00 local -> Monday 08:30 local
    opened = cal.next_office_open(local(2025, 3, 8, 3, 0))
    assert opened == datetime(2025, 3, 10, 0, 30, tzinfo=UTC)
    # Friday evening before a make-up Saturday -> that Saturday 08:30
    assert cal.next_office_open(local(2026, 2, 13, 19, 0)) == datetime(
        2026, 2, 14, 0, 30, tzinfo=UTC
    )
    # early morning on a working day -> same day
    assert cal.next_office_open(local(2025, 3, 4, 7, 0)) == datetime(2025, 3, 4, 0, 30, tzinfo=UTC)
    inside = local(2025, 3, 4, 11, 15)
    assert cal.next_office_open(inside) is inside
    # custom hours
    assert cal.next_office_open(local(2025, 3, 4, 8, 45), "09:00", "17:00") == datetime(
        2025, 3, 4, 1, 0, tzinfo=UTC
    )


# --------------------------------------------------------------------------- properties / speed
def test_between_consistent_with_add(cal):
    # 2026-01-05 is a working Monday; 2026-01-01 is a holiday whose previous working day
    # is 2025-12-31, so subtracting back lands there.
    for start, back in (
        (date(2026, 1, 5), date(2026, 1, 5)),
        (date(2026, 1, 1), date(2025, 12, 31)),
    ):
        for n in range(1, 300):
            end = cal.add_working_days(start, n)
            assert cal.working_days_between(start, end) == n
            assert cal.subtract_working_days(end, n) == back


@settings(max_examples=300, deadline=None)
@given(
    start=st.dates(min_value=date(2024, 1, 1), max_value=date(2028, 12, 31)),
    n=st.integers(min_value=0, max_value=60),
)
def test_property_add_then_count(start, n):
    cal = WorkingDayCalendar()
    end = cal.add_working_days(start, n)
    assert cal.is_working_day(end)
    assert end >= start
    if n >= 1:
        assert cal.working_days_between(start, end) == n
        assert cal.working_days_between(end, start) == -n
        back = cal.subtract_working_days(end, n)
        assert back <= start and cal.is_working_day(back)
        assert cal.working_days_between(back, start) == 0
    else:
        assert end == cal.next_working_day(start, include_self=True)
        # (start, end] contains exactly the end day unless start itself is a working day
        expected = 0 if cal.is_working_day(start) else 1
        assert (end == start) == (expected == 0)
        assert cal.working_days_between(start, end) == expected


def test_add_working_days_is_fast(cal):
    starts = [date(2024, 1, 1) + timedelta(days=i) for i in range(1000)]
    t0 = _time.perf_counter()
    for _ in range(5):
        for s in starts:
            cal.add_working_days(s, 400)
    assert _time.perf_counter() - t0 < 2.0


def test_timer_due_memo_is_bounded_and_lives_on_its_calendar():
    """The sweep memoises due moments on the calendar object, bounded: a long-running
    service that plans timers from ever new moments does not grow, and a fresh calendar
    (as the store reloads it) computes the same answers."""
    from workflows import timers
    from workflows.definition import load_all

    spec = next(
        t
        for t in load_all()["blocker"].definition.states["supervised"].timers
        if t.kind == "feedback_due"
    )
    cal = WorkingDayCalendar()
    start = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
    bases = [start + timedelta(minutes=7 * i) for i in range(timers.MEMO_MAX + 500)]
    memoised = [timers.due_at_for(spec, cal, None, base, 2) for base in bases]
    assert len(cal.memo) == timers.MEMO_MAX
    fresh = WorkingDayCalendar()
    assert [timers.due_at_for(spec, fresh, None, b, 2) for b in bases[::97]] == memoised[::97]
    # Served from the memo the second time, and still right.
    assert timers.due_at_for(spec, cal, None, bases[0], 2) == memoised[0]


def test_a_repeating_timer_stops_before_the_calendar_runs_out(cal):
    """Feedback every 5 working days, step after step: some 40 years on the next step is
    not planned (it would overflow the calendar and stop the sweep), it stops."""
    spec = next(t for t in load_all()["blocker"].definition.states["supervised"].timers if t.repeat)
    blocker = SimpleNamespace(id=1, deadline=None, due_at=None)
    base = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
    last = (MAX_DAYS - (spec.working_days or 0) - 1) // spec.repeat.working_days + 1
    assert make_timer(spec, cal, blocker, "supervised", base, 3, last) is not None
    assert make_timer(spec, cal, blocker, "supervised", base, 3, last + 1) is None
