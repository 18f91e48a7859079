"""Working-day arithmetic for Chinese government deadlines (Asia/Shanghai).

Sources of truth, per calendar year, in order of precedence:

1. ``"database"`` - an administrator-supplied :class:`YearOverride`;
2. ``"official"`` - the ``chinese_calendar`` package (State Council schedules,
   including make-up working days 调休);
3. ``"weekends-only"`` - fallback for years the package does not cover
   (it raises ``NotImplementedError`` outside its range, 2004-2026 in 1.11.0):
   Monday-Friday are working days.

Each year is materialised once as a sorted tuple of date ordinals, so the
arithmetic below is bisect-based rather than day-by-day iteration.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from calendar import monthrange
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import chinese_calendar

MAX_DAYS = 10_000  # guard against absurd spans (about 40 years of working days)
# The years the calendar keeps (2000–2100); business time stays a year inside them, so the
# jumps that timers and digests make around an instant stay inside too.
CALENDAR_YEARS = (2000, 2100)
OUTSIDE_CALENDAR = "the clock stays between 2001 and 2099, inside the calendar's years 2000–2100."

SOURCE_DATABASE = "database"
SOURCE_OFFICIAL = "official"
SOURCE_WEEKENDS_ONLY = "weekends-only"


def add_months(day: date, months: int) -> date:
    """The same day `months` later (or earlier); the 31st falls back to the month's last."""
    index = day.year * 12 + day.month - 1 + months
    year, month = index // 12, index % 12 + 1
    return date(year, month, min(day.day, monthrange(year, month)[1]))


@dataclass(frozen=True)
class YearOverride:
    """Explicit schedule for one year.

    ``holidays``: dates that are not working days even if Mon-Fri.
    ``workdays``: make-up working days (调休) that are working days even if weekend.
    A date in both sets is a working day.
    """

    holidays: frozenset[date]
    workdays: frozenset[date]

    def __post_init__(self) -> None:
        # Accept any iterable (lists from JSON/DB rows) but store frozensets.
        object.__setattr__(self, "holidays", frozenset(self.holidays))
        object.__setattr__(self, "workdays", frozenset(self.workdays))


def _year_dates(year: int) -> Iterable[date]:
    first = date(year, 1, 1)
    for i in range((date(year, 12, 31) - first).days + 1):
        yield first + timedelta(days=i)


@lru_cache(maxsize=256)
def _package_year(year: int) -> tuple[str, tuple[int, ...]]:
    """Source and sorted working-day ordinals of a year without override."""
    try:
        chinese_calendar.is_workday(date(year, 1, 1))
    except NotImplementedError:
        days = tuple(d.toordinal() for d in _year_dates(year) if d.weekday() < 5)
        return SOURCE_WEEKENDS_ONLY, days
    days = tuple(d.toordinal() for d in _year_dates(year) if chinese_calendar.is_workday(d))
    return SOURCE_OFFICIAL, days


def _parse_hhmm(hhmm: str) -> time:
    hours, _, minutes = hhmm.partition(":")
    return time(int(hours), int(minutes))


def _check_n(n: int) -> None:
    if n < 0 or n > MAX_DAYS:
        raise ValueError(f"number of working days must be in 0..{MAX_DAYS}, got {n}")


class WorkingDayCalendar:
    """Immutable working-day calendar; use :meth:`with_override` to derive variants."""

    def __init__(
        self, overrides: Mapping[int, YearOverride] | None = None, tz: str = "Asia/Shanghai"
    ) -> None:
        self._tz_name = tz
        self.tz = ZoneInfo(tz)
        self._overrides: dict[int, YearOverride] = dict(overrides or {})
        for year, ov in self._overrides.items():
            stray = sorted(d for d in ov.holidays | ov.workdays if d.year != year)
            if stray:
                raise ValueError(f"override for {year} contains dates of other years: {stray}")
        self._cache: dict[int, tuple[int, ...]] = {}
        # Results other modules derive from this calendar alone (e.g. a timer's due moment
        # from the moment a state was entered); they live and die with this calendar.
        self.memo: dict[tuple, object] = {}

    def with_override(self, year: int, override: YearOverride | None) -> WorkingDayCalendar:
        """Return a new calendar with ``override`` for ``year`` (``None`` removes it)."""
        overrides = dict(self._overrides)
        if override is None:
            overrides.pop(year, None)
        else:
            overrides[year] = override
        return WorkingDayCalendar(overrides, tz=self._tz_name)

    # ------------------------------------------------------------------ per-year data
    def source(self, year: int) -> str:
        if year in self._overrides:
            return SOURCE_DATABASE
        return _package_year(year)[0]

    def _days(self, year: int) -> tuple[int, ...]:
        days = self._cache.get(year)
        if days is None:
            ov = self._overrides.get(year)
            if ov is None:
                days = _package_year(year)[1]
            else:
                days = tuple(
                    d.toordinal()
                    for d in _year_dates(year)
                    if d in ov.workdays or (d.weekday() < 5 and d not in ov.holidays)
                )
            self._cache[year] = days
        return days

    # ------------------------------------------------------------------ arithmetic
    def is_working_day(self, d: date) -> bool:
        days = self._days(d.year)
        i = bisect_left(days, d.toordinal())
        return i < len(days) and days[i] == d.toordinal()

    def _nth_after(self, d: date, n: int) -> date:
        """The n-th (n >= 1) working day strictly after ``d``."""
        year = d.year
        days = self._days(year)
        i = bisect_right(days, d.toordinal())
        while n > len(days) - i:
            n -= len(days) - i
            year += 1
            days, i = self._days(year), 0
        return date.fromordinal(days[i + n - 1])

    def _nth_before(self, d: date, n: int) -> date:
        """The n-th (n >= 1) working day strictly before ``d``."""
        year = d.year
        days = self._days(year)
        i = bisect_left(days, d.toordinal())
        while n > i:
            n -= i
            year -= 1
            days = self._days(year)
            i = len(days)
        return date.fromordinal(days[i - n])

    def add_working_days(self, start: date, n: int) -> date:
        """n-th working day after ``start`` (start excluded); n == 0: start or next working day."""
        _check_n(n)
        if n == 0:
            return self.next_working_day(start, include_self=True)
        return self._nth_after(start, n)

    def subtract_working_days(self, d: date, n: int) -> date:
        """n-th working day before ``d`` (n >= 1, ``d`` excluded)."""
        _check_n(n)
        if n == 0:
            raise ValueError("subtract_working_days needs n >= 1")
        return self._nth_before(d, n)

    def working_days_between(self, a: date, b: date) -> int:
        """Working days in (a, b]; negative count of (b, a] when b < a."""
        if b < a:
            return -self.working_days_between(b, a)
        a_ord, b_ord = a.toordinal(), b.toordinal()
        total = 0
        for year in range(a.year, b.year + 1):
            days = self._days(year)
            total += bisect_right(days, b_ord) - bisect_right(days, a_ord)
        return total

    def next_working_day(self, d: date, include_self: bool = False) -> date:
        if include_self and self.is_working_day(d):
            return d
        return self._nth_after(d, 1)

    # ------------------------------------------------------------------ time zone helpers
    def local_date(self, instant: datetime) -> date:
        return self._local(instant).date()

    def _local(self, instant: datetime) -> datetime:
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError("an aware datetime is required")
        return instant.astimezone(self.tz)

    def at_local(self, d: date, hhmm: str) -> datetime:
        """Local wall-clock time ``hhmm`` on ``d``, as an aware UTC datetime."""
        return datetime.combine(d, _parse_hhmm(hhmm), tzinfo=self.tz).astimezone(UTC)

    def end_of_day(self, d: date) -> datetime:
        """Local 23:59:59 of ``d``, as an aware UTC datetime."""
        return datetime.combine(d, time(23, 59, 59), tzinfo=self.tz).astimezone(UTC)

    def deadline_after(self, start: datetime, n: int) -> tuple[date, datetime]:
        """``n`` working days after the local date of ``start``: (date, due instant UTC)."""
        due = self.add_working_days(self.local_date(start), n)
        return due, self.end_of_day(due)

    def in_office_hours(self, instant: datetime, start: str = "08:30", end: str = "18:00") -> bool:
        """True if ``instant`` falls in [start, end) local time on a working day."""
        local = self._local(instant)
        if not self.is_working_day(local.date()):
            return False
        return _parse_hhmm(start) <= local.time().replace(tzinfo=None) < _parse_hhmm(end)

    def next_office_open(
        self, instant: datetime, start: str = "08:30", end: str = "18:00"
    ) -> datetime:
        """``instant`` if within office hours, else the next opening time (aware UTC)."""
        if self.in_office_hours(instant, start, end):
            return instant
        local = self._local(instant)
        today = local.date()
        if self.is_working_day(today) and local.time().replace(tzinfo=None) < _parse_hhmm(start):
            return self.at_local(today, start)
        return self.at_local(self.next_working_day(today), start)

    # ------------------------------------------------------------------ reporting
    def years_without_official_data(self, start: date, end: date) -> list[int]:
        """Years touched by [start, end] that fall back to Monday-Friday."""
        lo, hi = sorted((start.year, end.year))
        return [y for y in range(lo, hi + 1) if self.source(y) == SOURCE_WEEKENDS_ONLY]

    def year_info(self, year: int) -> dict:
        working = {date.fromordinal(o) for o in self._days(year)}
        all_days = list(_year_dates(year))
        return {
            "year": year,
            "source": self.source(year),
            "holidays": [d.isoformat() for d in all_days if d.weekday() < 5 and d not in working],
            "workdays": [d.isoformat() for d in all_days if d.weekday() >= 5 and d in working],
            "working_days": len(working),
        }
