"""Business time: the system clock, or the simulation clock that only moves when told to."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    manual: bool

    def now(self) -> datetime: ...


class SystemClock:
    manual = False

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """Stands still until set; used for training, demos and acceptance runs.

    ``lock`` serialises whoever moves time and fires what falls due (the clock
    endpoint and the sweep), so a jump is replayed in due order exactly once.
    """

    manual = True

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the manual clock needs an aware start instant")
        self._now = start.astimezone(UTC)
        self.lock = threading.RLock()

    def now(self) -> datetime:
        return self._now

    def set(self, instant: datetime) -> None:
        if instant.tzinfo is None:
            raise ValueError("the manual clock needs an aware instant")
        self._now = instant.astimezone(UTC)
