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
        self._lock = threading.Lock()

    def get(self, session: Session) -> WorkingDayCalendar:
        with self._lock:
            if self._calendar is None or time.monotonic() - self._loaded_at > self.ttl_s:
                rows = list(session.exec(select(CalendarYear)))
                self._calendar = WorkingDayCalendar(overrides_from_rows(rows), tz=self.tz)
                self._loaded_at = time.monotonic()
            return self._calendar

    def invalidate(self) -> None:
        with self._lock:
            self._calendar = None
