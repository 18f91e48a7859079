"""The outbox dispatcher: claim due rows, send them outside any transaction, record the outcome.

One round (:meth:`Dispatcher.dispatch_once`):

1. **Claim**, in one short write transaction: find channels with due rows (see
   :mod:`notifiers.claims` for business vs real time), lock each channel row (PostgreSQL),
   drop rows whose channel is disabled, unknown or not allowed (→ ``dead`` with the
   reason), read the channel's rate budget, lock its due rows ``FOR UPDATE SKIP LOCKED``,
   render them and, when they outnumber the budget, merge them into digests. Every
   claimed row gets an in-flight attempt row: that is the lease and the rate-limit slot.
2. **Send** each message with httpx (10 s timeout, no redirects) or SMTP, no transaction
   open, so a slow platform never holds a database lock.
3. **Record**, one short transaction per message: complete the attempt rows (status code,
   response excerpt ≤ 500 chars, error) and set each row ``sent``, ``failed`` (not before
   real now + exponential backoff with jitter, at least Retry-After) or ``dead``
   (permanent error, or ``max_attempts`` used up; ``last_error`` says why).

Delivery is at least once: a crash between 2 and 3 leaves the lease to expire, and the
row goes out again with the same delivery id.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import ColumnElement
from sqlmodel import Session, select

from notifiers import claims, ratelimit
from notifiers.allowlist import check_url
from notifiers.base import DirectNotifier, Message, Outcome
from notifiers.digest import MAX_DIGEST_ITEMS, plan
from notifiers.registry import NOTIFIERS, AnyNotifier, notifier_for
from notifiers.render import blocker_link, render, render_digest
from service.db import Database
from service.models import Channel, Notification, NotificationAttempt
from service.models.types import utcnow

log = logging.getLogger(__name__)

requeue = claims.requeue

MAX_RETRY_AFTER_S = 86_400.0


@dataclass(frozen=True)
class Claim:
    notification_id: int
    attempt_id: int


@dataclass
class Job:
    """One platform message: a single row, or a digest of several rows of one channel."""

    channel: Channel
    notifier: AnyNotifier
    message: Message
    claims: list[Claim]
    claimed_at: datetime


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    status_code: int | None = None
    excerpt: str = ""


class Dispatcher:
    """Sends the outbox. Safe to run in several processes against one database.

    ``business_now``: the workflow clock (office-hours holds of ``pending`` rows).
    ``real_now``: the wall clock for leases, backoff and rate limits (injectable for tests).
    """

    def __init__(
        self,
        db: Database,
        *,
        allowed_hosts: frozenset[str],
        base_url: str = "http://127.0.0.1:8000",
        business_now: Callable[[], datetime],
        http: httpx.Client | None = None,
        max_attempts: int = 8,
        real_now: Callable[[], datetime] = utcnow,
        notifiers: Mapping[str, AnyNotifier] = NOTIFIERS,
        lease_s: float = 60.0,
        timeout_s: float = 10.0,
        backoff_base_s: float = 30.0,
        backoff_cap_s: float = 3600.0,
        rng: random.Random | None = None,
        workers: int = 16,
    ) -> None:
        self.db = db
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self.base_url = base_url.rstrip("/")
        self.business_now = business_now
        self.real_now = real_now
        self.max_attempts = max_attempts
        self.notifiers = notifiers
        self.lease_s = lease_s
        self.timeout_s = timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.rng = rng or random.Random()
        self._own_http = http is None
        self.http = http or httpx.Client(
            timeout=timeout_s,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=workers * 2, max_keepalive_connections=workers * 2),
        )
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._own_http:
            self.http.close()

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the loop
    def dispatch_once(self, batch: int = 100) -> int:
        """One round; returns how many outbox rows got an attempt (sent, failed or dead).

        Channels are sent to in parallel (``workers`` threads); within one channel the
        rows go out in order, and a "too fast" answer pauses that channel for the round.
        """
        jobs, handled = self._claim(batch)
        groups: dict[int, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.channel.id, []).append(job)
        if len(groups) <= 1 or self.workers <= 1:
            results = [self._run_channel(group) for group in groups.values()]
        else:
            results = list(self._executor().map(self._run_channel, groups.values()))
        self._record_all([pair for _, _, sent in results for pair in sent])
        skipped = [job for _, left, _ in results for job in left]
        handled += sum(done for done, _, _ in results)
        if skipped:
            with self.db.unit_of_work() as session:
                claims.release(session, [c.attempt_id for job in skipped for c in job.claims])
        return handled

    def _run_channel(self, jobs: list[Job]) -> tuple[int, list[Job], list[tuple[Job, SendResult]]]:
        handled, skipped, paused = 0, [], False
        sent: list[tuple[Job, SendResult]] = []
        for job in jobs:
            if paused or self._lease_nearly_over(job):
                skipped.append(job)
                continue
            result = self._send(job)
            sent.append((job, result))
            handled += len(job.claims)
            if result.outcome.throttled and job.notifier.policy.limits:
                paused = True  # the platform says "too fast": stop for now
        return handled, skipped, sent

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="duban-send"
            )
        return self._pool

    def run_forever(self, stop_event: threading.Event, interval_s: float = 0.5) -> None:
        while not stop_event.is_set():
            try:
                handled = self.dispatch_once()
            except Exception:
                log.exception("notification dispatch round failed")
                handled = 0
            if handled == 0:
                stop_event.wait(interval_s)

    # ------------------------------------------------------------------ claim
    def _claim(self, batch: int) -> tuple[list[Job], int]:
        """Claim up to ``batch`` rows; returns the messages to send and the rows finished
        on the spot (dead: channel unusable or nothing to render)."""
        business_now = self.business_now()
        jobs: list[Job] = []
        finished = 0
        with self.db.unit_of_work() as session:
            now = self.real_now()
            where = claims.due_filter(business_now, now, self.lease_s)
            due_channels = claims.due_channels(session, where)
            # A fair share per channel, so one busy group does not starve the others and
            # the round's sends spread over as many channels (threads) as possible.
            share = max(1, -(-batch // max(1, len(due_channels))))
            for channel_id, due in due_channels:
                left = min(share, batch - finished - sum(len(job.claims) for job in jobs))
                if left <= 0:
                    break
                new_jobs, dead = self._claim_channel(session, where, channel_id, due, left, now)
                jobs += new_jobs
                finished += dead
        return jobs, finished

    def _claim_channel(
        self,
        session: Session,
        where: ColumnElement[bool],
        channel_id: int,
        due: int,
        left: int,
        now: datetime,
    ) -> tuple[list[Job], int]:
        postgres = self.db.is_postgres
        channel = claims.lock_channel(session, channel_id, postgres)
        problem, notifier = self._check_channel(channel, channel_id)
        if problem is not None or notifier is None or channel is None:
            rows = claims.due_rows(session, where, channel_id, left, postgres)
            claims.mark_stale_claims_lost(session, [r.id for r in rows])
            for row in rows:
                claims.finish_dead(session, row, now, problem or "no notifier")
            return [], len(rows)
        allowance = ratelimit.budget(session, channel_id, notifier.policy, now)
        if allowance == 0:
            return [], 0
        limit = left if allowance is None else min(left, allowance * MAX_DIGEST_ITEMS)
        rows = claims.due_rows(session, where, channel_id, limit, postgres)
        claims.mark_stale_claims_lost(session, [r.id for r in rows])
        singles: list[tuple[Notification, Message]] = []
        dead = 0
        for row in rows:
            try:
                singles.append((row, self._message(channel, row)))
            except Exception as exc:  # no template, broken context: never sendable
                claims.finish_dead(session, row, now, f"cannot render: {exc}")
                dead += 1
        jobs = [
            self._open(session, channel, notifier, planned.message, planned.rows, now)
            for planned in plan(notifier, singles, allowance, self._merge, due)
        ]
        return jobs, dead

    def _check_channel(
        self, channel: Channel | None, channel_id: int
    ) -> tuple[str | None, AnyNotifier | None]:
        if channel is None:
            return f"channel {channel_id} does not exist", None
        if not channel.enabled:
            return f"channel {channel_id} is disabled", None
        try:
            notifier = notifier_for(channel.kind, self.notifiers)
            check_url(channel.url, self.allowed_hosts)
        except (LookupError, ValueError) as exc:
            return f"channel {channel_id}: {exc}", None
        return None, notifier

    def _message(self, channel: Channel, row: Notification) -> Message:
        if channel.kind == "webhook":  # machine receivers get the event JSON itself
            link = blocker_link(self.base_url, row.blocker_id) if row.blocker_id else ""
            return Message(
                title=row.event_type or row.kind,
                markdown="",
                text="",
                link=link,
                event_type=row.event_type,
                delivery_id=row.delivery_id,
                payload=row.context,
            )
        return render(
            row.kind,
            row.context,
            self.base_url,
            mentions=row.mentions,
            event_type=row.event_type,
            delivery_id=row.delivery_id,
        )

    def _merge(self, rows: Sequence[Notification]) -> Message:
        return render_digest([(r.kind, r.context, r.mentions) for r in rows], self.base_url)

    def _open(
        self,
        session: Session,
        channel: Channel,
        notifier: AnyNotifier,
        message: Message,
        rows: Sequence[Notification],
        now: datetime,
    ) -> Job:
        carrier = rows[0]
        attempts = [
            claims.open_attempt(
                session,
                row.id,
                now,
                None if row is carrier else f"{ratelimit.DIGEST_MEMBER}{carrier.id}",
            )
            for row in rows
        ]
        session.flush()
        return Job(
            channel=channel,
            notifier=notifier,
            message=message,
            claims=[Claim(row.id, attempt.id) for row, attempt in zip(rows, attempts, strict=True)],
            claimed_at=now,
        )

    def _lease_nearly_over(self, job: Job) -> bool:
        margin = timedelta(seconds=max(0.0, self.lease_s - self.timeout_s - 5.0))
        return self.real_now() >= job.claimed_at + margin

    # ------------------------------------------------------------------ send
    def _send(self, job: Job) -> SendResult:
        notifier = job.notifier
        try:
            if isinstance(notifier, DirectNotifier):
                outcome = notifier.deliver(job.channel, job.message)
                return SendResult(outcome, None, outcome.excerpt)
            request = notifier.build(job.channel, job.message)
        except ValueError as exc:
            return SendResult(Outcome.permanent(f"cannot build the message: {exc}"))
        except Exception as exc:
            log.exception("notifier %s failed", notifier.kind)
            return SendResult(Outcome.retry(f"internal error: {exc!r}"))
        try:
            response = self.http.request(
                request.method,
                request.url,
                headers=request.headers,
                content=request.body,
                timeout=self.timeout_s,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            return SendResult(Outcome.retry(f"{type(exc).__name__}: {exc}"))
        try:
            outcome = notifier.interpret(response)
        except Exception as exc:
            outcome = Outcome.retry(f"cannot read the answer: {exc!r}")
        return SendResult(outcome, response.status_code, response.text[: claims.EXCERPT_MAX])

    # ------------------------------------------------------------------ record
    def _record(self, job: Job, result: SendResult) -> None:
        self._record_all([(job, result)])

    def _record_all(self, results: list[tuple[Job, SendResult]]) -> None:
        """Record a round's attempts in one transaction (one write, not one per message)."""
        if not results:
            return
        with self.db.unit_of_work() as session:
            now = self.real_now()
            # Load (and on PostgreSQL lock) the round's rows in two statements, not two per row.
            claimed = [claim for job, _ in results for claim in job.claims]
            rows = select(Notification).where(
                Notification.id.in_([c.notification_id for c in claimed])
            )
            list(session.exec(rows.with_for_update() if self.db.is_postgres else rows))
            list(
                session.exec(
                    select(NotificationAttempt).where(
                        NotificationAttempt.id.in_([c.attempt_id for c in claimed])
                    )
                )
            )
            for job, result in results:
                self._record_in(session, job, result, now)

    def _record_in(self, session: Session, job: Job, result: SendResult, now: datetime) -> None:
        outcome = result.outcome
        error = None
        if not outcome.ok:
            error = (ratelimit.THROTTLED if outcome.throttled else "") + outcome.reason
        carrier_id = job.claims[0].notification_id
        for claim in job.claims:
            attempt = session.get(NotificationAttempt, claim.attempt_id)
            if attempt is not None:
                excerpt = result.excerpt
                if claim.notification_id != carrier_id:
                    excerpt = f"{ratelimit.DIGEST_MEMBER}{carrier_id}: {excerpt}"
                attempt.status_code = result.status_code
                attempt.ok = outcome.ok
                attempt.response_excerpt = (excerpt or None) and excerpt[: claims.EXCERPT_MAX]
                attempt.error = error[: claims.ERROR_MAX] if error else None
                session.add(attempt)
            row = session.get(Notification, claim.notification_id)  # loaded and locked above
            if row is not None:
                self._settle(row, outcome, now)
                session.add(row)

    def _settle(self, row: Notification, outcome: Outcome, now: datetime) -> None:
        row.attempts += 1
        if outcome.ok:
            row.status, row.sent_at, row.last_error = "sent", now, None
            return
        if row.status == "sent":  # delivered by another claim meanwhile (lease ran out)
            return
        reason = outcome.reason[: claims.LAST_ERROR_MAX]
        if outcome.status == "permanent":
            row.status, row.last_error = "dead", reason
        elif row.attempts >= self.max_attempts:
            row.status = "dead"
            row.last_error = f"{reason} (gave up after {row.attempts} attempts)"[
                : claims.LAST_ERROR_MAX
            ]
        else:
            row.status, row.last_error = "failed", reason
            row.not_before = now + timedelta(seconds=self._retry_delay(row.attempts, outcome))

    def _retry_delay(self, attempts: int, outcome: Outcome) -> float:
        """Exponential backoff with "equal jitter", never sooner than Retry-After."""
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2 ** max(0, attempts - 1))
        delay = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
        if outcome.retry_after_s is not None:
            delay = max(delay, min(outcome.retry_after_s, MAX_RETRY_AFTER_S))
        return delay
