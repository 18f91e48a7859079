"""What a send that did not deliver does to its outbox row: try again later, or give up.

``failed`` with ``not_before`` = real now + exponential backoff with "equal jitter" (never
sooner than the platform's Retry-After), or ``dead`` with the reason: a permanent error
(bad key, bad signature) at once, anything else once ``max_attempts`` are used up.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from notifiers.base import Outcome
from notifiers.claims import LAST_ERROR_MAX
from service.models import Notification

MAX_RETRY_AFTER_S = 86_400.0

log = logging.getLogger(__name__)


@dataclass
class RetryPolicy:
    max_attempts: int = 12  # 2.5 to 5 hours of outage before a row needs an operator
    backoff_base_s: float = 30.0
    backoff_cap_s: float = 3600.0
    rng: random.Random = field(default_factory=random.Random)

    def settle(self, row: Notification, outcome: Outcome, now: datetime) -> None:
        """Count the attempt and set the row ``failed`` (with its next try) or ``dead``."""
        row.attempts += 1
        if row.status == "sent":  # delivered by another claim meanwhile (lease ran out)
            return
        reason = outcome.reason[:LAST_ERROR_MAX]
        if outcome.status == "permanent":
            row.status, row.last_error = "dead", reason
        elif row.attempts >= self.max_attempts:
            row.status = "dead"
            gave_up = f"{reason} (gave up after {row.attempts} attempts)"
            row.last_error = gave_up[:LAST_ERROR_MAX]
        else:
            row.status, row.last_error = "failed", reason
            row.not_before = now + timedelta(seconds=self.delay(row.attempts, outcome))
        if row.status == "dead":  # what an operator must act on: in the log, not only the API
            log.warning(
                "notification %s to channel %s is dead: %s", row.id, row.channel_id, row.last_error
            )

    def delay(self, attempts: int, outcome: Outcome) -> float:
        """Exponential backoff with "equal jitter", never sooner than Retry-After."""
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2 ** max(0, attempts - 1))
        delay = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
        if outcome.retry_after_s is not None:
            delay = max(delay, min(outcome.retry_after_s, MAX_RETRY_AFTER_S))
        return delay
