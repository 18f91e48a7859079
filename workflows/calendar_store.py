"""The working-day calendar with the administrator's overrides from the database."""

from __future__ import annotations

import threading
import time
from datetime import date

from sqlmodel import Session, select

from service.models import CalendarYear
from workflows.calendar import WorkingDayCalendar, YearOverride


def overrides_from_rows(rows: list[CalendarYear]) -> dict[int, YearOverride]:
    return {
        row.year: YearOverride(
            holidays=frozenset(date.fromisoformat(d) for d in row.holidays),
            workdays=frozenset(date.fromisoformat(d) for d in row.workdays),
        )
        for row in rows
    }


class CalendarStore:
    """Caches the calendar; reloads after `ttl_s` so other processes' edits are seen."""

    def __init__(self, tz: str = "Asia/Shanghai", ttl_s: float = 5.0) -> None:
        self.tz = tz
        self.ttl_s = ttl_s
        self._calendar: WorkingDayCalendar | None = None
        self._loaded_at = 0.0
        self._generation = 0
        self._lock = threading.Lock()

    def get(self, session: Session) -> WorkingDayCalendar:
        calendar, loaded_at = self._calendar, self._loaded_at
        if calendar is not None and time.monotonic() - loaded_at <= self.ttl_s:
            return calendar
        # Query without holding the lock: the caller's session may be waiting for the
        # database's write lock while another thread, holding that write lock, waits here.
        generation = self._generation
        rows = list(session.exec(select(CalendarYear)))
        calendar = WorkingDayCalendar(overrides_from_rows(rows), tz=self.tz)
        with self._lock:
            if generation == self._generation:  # not invalidated while we read
                self._calendar, self._loaded_at = calendar, time.monotonic()
        return calendar

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._calendar = None
