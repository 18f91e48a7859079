"""The record side of the pipelined dispatcher: outcomes written in batches, off the send path.

The sending threads hand each finished job to :meth:`Recorder.report`; one thread writes
whatever has gathered in one transaction (the dispatcher's ``record`` function) while the
next messages are already on the wire. The recorder also counts the rows each channel
has in flight (claimed, not yet recorded), which is what the claimer uses to size its
next claim and to leave a rate-limited robot alone until its last answer is written.

A batch that cannot be written is logged and dropped: its rows keep their in-flight
attempts, the lease runs out and they go out again with the same delivery ids.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence

from notifiers import ratelimit
from notifiers.base import Outcome
from notifiers.claims import ERROR_MAX, EXCERPT_MAX
from notifiers.sender import Job, SendResult
from service.failures import FailureLog

log = logging.getLogger(__name__)

Reports = list[tuple[Job, SendResult | None]]
AttemptOutcome = tuple[int, int | None, bool, str | None, str | None]


def sort_reports(
    reports: Reports,
) -> tuple[list[int], list[AttemptOutcome], list[int], list[tuple[int, Outcome]]]:
    """What to write for some sends: the attempt ids of unsent jobs (to give back), each
    attempt's (id, status code, ok, response excerpt, error), the rows delivered, and the
    rows that failed with their outcome. The extra rows of a digest say whose message
    they went in."""
    unsent: list[int] = []
    attempts: list[AttemptOutcome] = []
    sent: list[int] = []
    failed: list[tuple[int, Outcome]] = []
    for job, result in reports:
        if result is None:
            unsent += [claim.attempt_id for claim in job.claims]
            continue
        outcome = result.outcome
        error = None
        if not outcome.ok:
            error = (ratelimit.THROTTLED if outcome.throttled else "") + outcome.reason
            error = error[:ERROR_MAX]
        carrier_id = job.claims[0].notification_id
        for claim in job.claims:
            excerpt = result.excerpt
            if claim.notification_id != carrier_id:
                excerpt = f"{ratelimit.DIGEST_MEMBER}{carrier_id}: {excerpt}"
            excerpt = (excerpt or None) and excerpt[:EXCERPT_MAX]
            attempts.append((claim.attempt_id, result.status_code, outcome.ok, excerpt, error))
            if outcome.ok:
                sent.append(claim.notification_id)
            else:
                failed.append((claim.notification_id, outcome))
    return unsent, attempts, sent, failed


class Recorder:
    def __init__(
        self, record: Callable[[Reports], None], *, linger_s: float = 0.05, max_batch: int = 1000
    ) -> None:
        self.record = record
        self.linger_s = linger_s
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._reports: Reports = []
        self._in_flight: Counter[int] = Counter()
        self._landed = 0  # batches written so far: what waiters watch for progress
        self._closing = False
        self._failures = FailureLog(log, "recording deliveries")
        self._thread = threading.Thread(target=self._run, name="duban-record", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the claimer's side
    def take_off(self, jobs: Sequence[Job]) -> None:
        with self._cond:
            for job in jobs:
                self._in_flight[job.channel.id] += len(job.claims)

    def in_flight(self) -> dict[int, int]:
        with self._cond:
            return dict(self._in_flight)

    @property
    def rows_in_flight(self) -> int:
        with self._cond:
            return self._in_flight.total()

    def wait_for_progress(self, timeout_s: float) -> None:
        """Until the next batch is written (rows leave the flight), or ``timeout_s``."""
        with self._cond:
            landed = self._landed
            self._cond.wait_for(lambda: self._landed != landed, timeout=timeout_s)

    def close(self, timeout_s: float) -> None:
        """Write what is still in flight (at most ``timeout_s``), then stop."""
        with self._cond:
            self._cond.wait_for(lambda: not self._in_flight, timeout=timeout_s)
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=timeout_s)

    # ------------------------------------------------------------------ the senders' side
    def report(self, job: Job, result: SendResult | None) -> None:
        with self._cond:
            self._reports.append((job, result))
            if len(self._reports) in (1, self.max_batch):  # the writer waits for these two
                self._cond.notify_all()

    # ------------------------------------------------------------------ the writer
    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._reports or self._closing)
                if not self._reports:
                    return
                # Let a few more answers arrive: one transaction for many, not one each.
                self._cond.wait_for(
                    lambda: len(self._reports) >= self.max_batch or self._closing,
                    timeout=self.linger_s,
                )
                batch = self._reports[: self.max_batch]
                del self._reports[: self.max_batch]
            try:
                self.record(batch)
                self._failures.succeeded()
            except Exception:
                # Their leases run out, and the rows are sent again with the same delivery id.
                self._failures.failed()
            with self._cond:
                for job, _ in batch:
                    self._in_flight[job.channel.id] -= len(job.claims)
                self._in_flight = +self._in_flight  # drop channels with nothing left
                self._landed += 1
                self._cond.notify_all()
