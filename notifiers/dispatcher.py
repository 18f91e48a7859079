"""The outbox dispatcher: claim due rows, send them outside any transaction, record the outcome.

Three steps, each in its own place:

1. **Claim** (:meth:`Dispatcher._claim`), in one short write transaction: find channels with
   due rows (see :mod:`notifiers.claims` for business vs real time), drop rows whose channel
   is disabled, unknown or not allowed (→ ``dead`` with the reason), lock each rate-limited
   channel (PostgreSQL) and read its budget, lock its due rows ``FOR UPDATE SKIP LOCKED``,
   render them and, when they outnumber the budget, merge them into digests. Every claimed
   row gets an in-flight attempt row: that is the lease and the rate-limit slot.
2. **Send** (:class:`notifiers.sender.Sender`) on a pool of threads with httpx (10 s timeout,
   no redirects) or SMTP, no transaction open, so a slow platform never holds a lock.
3. **Record** (:meth:`Dispatcher._record_all`), one transaction for many messages: complete
   the attempt rows (status code, response excerpt ≤ 500 chars, error) and set each row
   ``sent``, ``failed`` (not before real now + exponential backoff with jitter, at least
   Retry-After) or ``dead`` (permanent error, or ``max_attempts`` used up; ``last_error``
   says why).

:meth:`Dispatcher.dispatch_once` runs the three in turn, for one round. :meth:`run_forever`
pipelines them: the next claim is made while the last one is on the wire, and outcomes are
written in batches by a :class:`notifiers.recorder.Recorder` thread. Idle, it polls, and
wakes early when outbox rows are committed (``Database.outbox_bell``; from other
processes through PostgreSQL's NOTIFY, :mod:`notifiers.wakeup`).

Delivery is at least once: a crash between 2 and 3 leaves the lease to expire, and the
row goes out again with the same delivery id.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import httpx
from sqlmodel import Session

from notifiers import claims, ratelimit
from notifiers.allowlist import check_url
from notifiers.base import UNCONFIRMED, Message
from notifiers.claims import DueRow
from notifiers.digest import MAX_DIGEST_ITEMS, plan
from notifiers.recorder import Recorder, Reports, sort_reports
from notifiers.registry import NOTIFIERS, AnyNotifier, notifier_for
from notifiers.render import blocker_link, render, render_digest, stands_alone
from notifiers.retries import RetryPolicy
from notifiers.sender import Claim, Job, Sender, SendResult
from notifiers.wakeup import OutboxListener
from service.db import Database
from service.failures import FailureLog
from service.models import Channel
from service.models.types import utcnow

log = logging.getLogger(__name__)

requeue = claims.requeue

UNBOUNDED = 1 << 30
IDLE_SLICE_S = 0.05  # how soon an idle dispatcher notices that it is being stopped


@dataclass(frozen=True)
class Verdict:
    """What may be claimed for one channel now."""

    notifier: AnyNotifier | None
    allowance: int | None  # messages its rate limit still allows; None: no limit
    problem: str | None  # why it cannot be sent to: its due rows go dead
    room: int = UNBOUNDED  # rows to claim at most


class Dispatcher:
    """Sends the outbox. Safe to run in several processes against one database.

    ``business_now``: the workflow clock (office-hours holds of ``pending`` rows).
    ``real_now``: the wall clock for leases, backoff and rate limits (injectable for tests).
    ``http``: one client shared by every sending thread; by default each thread has its own.
    """

    def __init__(
        self,
        db: Database,
        *,
        allowed_hosts: frozenset[str],
        base_url: str = "http://127.0.0.1:8000",
        business_now: Callable[[], datetime],
        http: httpx.Client | None = None,
        trust_env: bool = True,
        max_attempts: int = 12,
        real_now: Callable[[], datetime] = utcnow,
        notifiers: Mapping[str, AnyNotifier] = NOTIFIERS,
        lease_s: float = claims.LEASE_S,
        timeout_s: float = 10.0,
        backoff_base_s: float = 30.0,
        backoff_cap_s: float = 3600.0,
        rng: random.Random | None = None,
        workers: int = 16,
        claim_gap_s: float = 0.05,
    ) -> None:
        self.db = db
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self.base_url = base_url.rstrip("/")
        self.business_now = business_now
        self.real_now = real_now
        self.notifiers = notifiers
        self.lease_s = lease_s
        self.timeout_s = timeout_s
        self.retries = RetryPolicy(
            max_attempts, backoff_base_s, backoff_cap_s, rng or random.Random()
        )
        self.claim_gap_s = claim_gap_s
        self._stopping = False
        self.sender = Sender(
            workers=workers,
            timeout_s=timeout_s,
            may_send=self._may_send,
            http=http,
            trust_env=trust_env,
        )

    def close(self) -> None:
        self.sender.close()

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the loops
    def dispatch_once(self, batch: int = 100) -> int:
        """One round, start to end; returns how many outbox rows got an attempt (sent,
        failed or dead).

        Channels are sent to in parallel; within one channel the rows go out in order, and a
        "too fast" answer pauses that channel for the round.
        """
        jobs, handled = self._claim(batch)
        if not jobs:
            return handled
        reports: Reports = []
        done = threading.Event()
        lock = threading.Lock()

        def report(job: Job, result: SendResult | None) -> None:
            with lock:
                reports.append((job, result))
                if len(reports) == len(jobs):
                    done.set()

        self.sender.submit((job, report) for job in jobs)
        done.wait()
        self._record_all(reports)
        return handled + sum(len(job.claims) for job, result in reports if result is not None)

    def run_forever(
        self, stop_event: threading.Event, interval_s: float = 0.5, batch: int = 100
    ) -> None:
        """Claim, send and record at once, until ``stop_event`` is set.

        At most ``2 * batch`` rows are in flight, and at most ``batch / 10`` (20 or more) of
        one channel, so a slow receiver cannot take every sending thread. A rate-limited
        robot is not claimed for at all while it has a row in flight: its budget, pause and
        "too fast" answers are written before it is looked at again.
        """
        max_in_flight = 2 * batch
        per_channel = max(MAX_DIGEST_ITEMS, batch // 10)
        recorder = Recorder(self._record_all)
        listener = OutboxListener.start_for(self.db)  # other processes' commits
        claim_failures = FailureLog(log, "claiming notifications")
        try:
            while not stop_event.is_set():
                room = max_in_flight - recorder.rows_in_flight
                if room < batch // 2:
                    recorder.wait_for_progress(interval_s)
                    continue
                try:
                    jobs, handled = self._claim(min(batch, room), recorder.in_flight(), per_channel)
                    claim_failures.succeeded()
                except Exception:
                    claim_failures.failed()
                    jobs, handled = [], 0
                recorder.take_off(jobs)
                self.sender.submit((job, recorder.report) for job in jobs)
                claimed = handled + sum(len(job.claims) for job in jobs)
                if claimed == 0 and recorder.rows_in_flight:
                    recorder.wait_for_progress(interval_s)  # due rows may wait on a busy channel
                elif claimed == 0:
                    self._idle(stop_event, interval_s)
                elif claimed < batch // 2:
                    stop_event.wait(self.claim_gap_s)  # a trickle: let a few rows gather
        finally:
            self._stopping = True  # queued messages go back unsent; the ones on the wire land
            if listener is not None:
                listener.stop()
            try:
                recorder.close(self.timeout_s + 5.0)
            finally:
                self._stopping = False

    def _idle(self, stop_event: threading.Event, seconds: float) -> None:
        """Nothing due: wait ``seconds``, less if outbox rows are committed meanwhile (the
        database's outbox bell) or the loop is stopped."""
        bell = self.db.outbox_bell
        deadline = time.monotonic() + seconds
        while not stop_event.is_set() and (left := deadline - time.monotonic()) > 0:
            if bell.wait(min(left, IDLE_SLICE_S)):
                bell.clear()  # rows committed before this are seen by the next claim
                return

    # ------------------------------------------------------------------ claim
    def _claim(
        self, batch: int, in_flight: Mapping[int, int] | None = None, per_channel: int = 0
    ) -> tuple[list[Job], int]:
        """Claim up to ``batch`` rows; returns the messages to send and the rows finished
        on the spot (dead: channel unusable or nothing to render).

        The channels take turns (see :func:`notifiers.claims.ranked_due`), so one busy group
        does not starve the others and the sends spread over as many channels as possible.
        ``in_flight``: rows this dispatcher still has on the way, per channel; with them a
        channel has at most ``per_channel`` rows (default ``batch``), and a rate-limited
        robot with any is left alone (see :meth:`run_forever`)."""
        in_flight = in_flight or {}
        per_channel = per_channel or batch
        business_now = self.business_now()
        with self.db.unit_of_work() as session:
            claims.plan_for_the_values(session)
            now = self.real_now()
            where = claims.due_filter(business_now, now, self.lease_s)
            # Rows over a channel's room are passed over: ask for as many more as could be.
            limit = batch + sum(in_flight.values())
            ranked = claims.ranked_due(session, where, cap=per_channel, limit=limit)
            channels = claims.load_channels(session, list({due.channel_id for due in ranked}))
            if self.db.is_postgres:
                claims.lock_channels(
                    session,
                    sorted(
                        c for c in channels if self._limited(channels[c]) and not in_flight.get(c)
                    ),
                )
            verdicts: dict[int, Verdict] = {}
            chosen: list[int] = []
            taken: Counter[int] = Counter()
            for due in ranked:
                cid = due.channel_id
                if cid not in verdicts:
                    busy = in_flight.get(cid, 0)
                    verdict = self._verdict(session, channels.get(cid), cid, busy, now)
                    verdicts[cid] = replace(verdict, room=min(verdict.room, per_channel - busy))
                if taken[cid] < verdicts[cid].room:
                    taken[cid] += 1
                    chosen.append(due.id)
                    if len(chosen) == batch:
                        break
            leased_since = now - timedelta(seconds=self.lease_s)
            rows = claims.lock_due(session, where, chosen, leased_since, self.db.is_postgres)
            lost = claims.mark_stale_claims_lost(session, [row.id for row in rows])
            backlog = {due.channel_id: due.backlog for due in ranked}
            by_channel: dict[int, list[DueRow]] = {}
            for row in rows:
                by_channel.setdefault(row.channel_id, []).append(row)
            dead: list[tuple[DueRow, str]] = []
            planned: list[tuple[Channel, AnyNotifier, Message, list[DueRow]]] = []
            for cid, members in by_channel.items():
                verdict, channel = verdicts[cid], channels.get(cid)
                if verdict.problem is not None or verdict.notifier is None or channel is None:
                    dead += [(row, verdict.problem or "no notifier") for row in members]
                    continue
                if verdict.notifier.policy.at_most_once and lost:
                    # A dispatcher stopped (or hung past its lease) with this on the way: the
                    # group may have it already, so it is not sent again by itself.
                    dead += [
                        (row, f"{claims.LOST} — {UNCONFIRMED}") for row in members if row.id in lost
                    ]
                    members = [row for row in members if row.id not in lost]
                    if not members:
                        continue
                planned += [
                    (channel, verdict.notifier, message, group)
                    for message, group in self._plan(
                        channel, verdict.notifier, members, verdict.allowance, backlog[cid], dead
                    )
                ]
            claims.finish_dead(session, [(row.id, reason) for row, reason in dead], now)
            return self._open(session, planned, now), len(dead)

    def _limited(self, channel: Channel) -> bool:
        notifier = self.notifiers.get(channel.kind)
        return notifier is not None and bool(notifier.policy.limits)

    def _verdict(
        self, session: Session, channel: Channel | None, channel_id: int, busy: int, now: datetime
    ) -> Verdict:
        problem, notifier = self._check_channel(channel, channel_id)
        if problem is not None or notifier is None:
            return Verdict(None, None, problem)
        if not notifier.policy.limits:
            return Verdict(notifier, None, None)
        if busy:  # its last answers are not written yet: its budget and pause are unknown
            return Verdict(notifier, 0, None, room=0)
        allowance = ratelimit.budget(session, channel_id, notifier.policy, now)
        return Verdict(notifier, allowance, None, room=(allowance or 0) * MAX_DIGEST_ITEMS)

    def _plan(
        self,
        channel: Channel,
        notifier: AnyNotifier,
        rows: Sequence[DueRow],
        allowance: int | None,
        due: int,
        dead: list[tuple[DueRow, str]],
    ) -> list[tuple[Message, list[DueRow]]]:
        """Render the rows and fit them into the robot's budget (digests when over it)."""
        singles: list[tuple[DueRow, Message]] = []
        for row in rows:
            try:
                singles.append((row, self._message(channel, row)))
            except Exception as exc:  # no template, broken context: never sendable
                dead.append((row, f"cannot render: {exc}"))
        planned = plan(notifier, singles, allowance, self._merge, due, alone=stands_alone)
        return [(p.message, p.rows) for p in planned]

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

    def _message(self, channel: Channel, row: DueRow) -> Message:
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

    def _merge(self, rows: Sequence[DueRow]) -> Message:
        return render_digest([(r.kind, r.context, r.mentions) for r in rows], self.base_url)

    def _open(
        self,
        session: Session,
        planned: Sequence[tuple[Channel, AnyNotifier, Message, list[DueRow]]],
        now: datetime,
    ) -> list[Job]:
        """One in-flight attempt per claimed row, all in one statement. The extra rows of a
        digest are marked as its members, so the robot's budget counts the message once."""
        claimed = [
            (row.id, None if row is rows[0] else f"{ratelimit.DIGEST_MEMBER}{rows[0].id}")
            for _, _, _, rows in planned
            for row in rows
        ]
        attempt_ids = iter(claims.open_attempts(session, claimed, now))
        return [
            Job(
                channel=channel,
                notifier=notifier,
                message=message,
                claims=[Claim(row.id, next(attempt_ids)) for row in rows],
                claimed_at=now,
            )
            for channel, notifier, message, rows in planned
        ]

    def _may_send(self, job: Job) -> bool:
        margin = timedelta(seconds=max(0.0, self.lease_s - self.timeout_s - 5.0))
        return not self._stopping and self.real_now() < job.claimed_at + margin

    # ------------------------------------------------------------------ record
    def _record_all(self, reports: Reports) -> None:
        """Record many sends in one transaction, with a few statements for the lot.

        Unsent jobs (``None``) give their rows back: their in-flight attempts are dropped.
        Delivered rows are marked ``sent`` by one statement; only rows that failed are
        loaded (and locked, on PostgreSQL) to decide between ``failed`` and ``dead``."""
        if not reports:
            return
        unsent, attempts, sent, failed = sort_reports(reports)
        with self.db.unit_of_work() as session:
            claims.plan_for_the_values(session)
            now = self.real_now()
            claims.release(session, unsent)
            claims.complete_attempts(session, attempts, now)
            claims.mark_sent(session, sent, now)
            if failed:
                rows = claims.lock_rows(session, [nid for nid, _ in failed], self.db.is_postgres)
                for notification_id, outcome in failed:
                    if (row := rows.get(notification_id)) is not None:
                        self.retries.settle(row, outcome, now)
                        session.add(row)
