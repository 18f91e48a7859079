"""Failures of a background loop, logged so that a database outage is one traceback and then
a line a minute, not a traceback on every retry (an operator's disk fills otherwise)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable


class FailureLog:
    def __init__(
        self,
        log: logging.Logger,
        what: str,
        quiet_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log, self.what, self.quiet_s, self.clock = log, what, quiet_s, clock
        self.key: tuple[str, str] | None = None
        self.count = 0
        self.first = self.said = 0.0

    def failed(self) -> None:
        """Call from an `except` block: the first failure of a kind with its traceback,
        repeats of it once a `quiet_s` at most, in one line."""
        error = sys.exc_info()[1]
        key = (type(error).__name__, (str(error).strip().splitlines() or [""])[0][:300])
        now = self.clock()
        if key != self.key:
            self.log.exception("%s failed; it will run again", self.what)
            self.key, self.count, self.first, self.said = key, 1, now, now
            return
        self.count += 1
        if now - self.said >= self.quiet_s:
            self.log.error(
                "%s still failing (%d times in %.0f s): %s: %s",
                self.what, self.count, now - self.first, *key,
            )  # fmt: skip
            self.said = now

    def succeeded(self) -> None:
        """Call when the loop's work went through: says so once after failures."""
        if self.key is not None:
            self.log.warning("%s works again after %d failure(s)", self.what, self.count)
            self.key, self.count = None, 0
