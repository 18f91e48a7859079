"""A background loop failing on every retry (the database down) logs one traceback, then a
line a minute, then that it works again: not a traceback per retry."""

from __future__ import annotations

import logging

from service.failures import FailureLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(failures: FailureLog, message: str) -> None:
    try:
        raise ConnectionError(message)
    except ConnectionError:
        failures.failed()


def test_an_outage_is_one_traceback_and_a_line_a_minute(caplog):
    clock = Clock()
    failures = FailureLog(logging.getLogger("duban.test"), "timer sweep", clock=clock)
    with caplog.at_level("INFO", logger="duban.test"):
        for _ in range(60):  # a retry a second for a minute and a half
            fail(failures, "connection refused\nis the server running?")
            clock.now += 1.5
        tracebacks = [r for r in caplog.records if r.exc_info]
        lines = [r.getMessage() for r in caplog.records if not r.exc_info]
        assert len(tracebacks) == 1 and tracebacks[0].getMessage() == "timer sweep failed; it will run again"
        assert lines == ["timer sweep still failing (41 times in 60 s): ConnectionError: connection refused"]
        fail(failures, "another thing")  # a different failure shows its own traceback
        assert len([r for r in caplog.records if r.exc_info]) == 2
        failures.succeeded()
        failures.succeeded()  # said once
        assert [r.getMessage() for r in caplog.records][-1] == "timer sweep works again after 1 failure(s)"
        assert sum("works again" in r.getMessage() for r in caplog.records) == 1
