"""The dispatcher's database side: which rows are due, claiming them, recording outcomes.

Two clocks meet in ``notifications.not_before``:

* ``status = 'pending'`` rows wait for *business* time (office hours: "send at 08:30 on the
  next working day" follows the manual simulation clock, which may stand still);
* ``status = 'failed'`` rows wait for *real* time (retry backoff, Retry-After — the outside
  world does not care about the simulation).

The claim lease is real time too, but it is not stored in ``not_before`` (which would mix
it into the business clock of pending rows): it is the claim's own attempt row, written
with ``error = IN_FLIGHT`` at claim time. A row with an in-flight attempt younger than the
lease is not due; once the lease runs out (the dispatcher died between send and mark)
the row is due again and is re-sent with the same delivery id, and the stale attempt is
relabelled :data:`LOST`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, update
from sqlmodel import Session, col, select

from notifiers.ratelimit import IN_FLIGHT
from service.models import Channel, Notification, NotificationAttempt
from service.models.types import utcnow

LOST = "lost: claimed but no outcome recorded before the lease ran out (dispatcher stopped?)"
EXCERPT_MAX = 500
ERROR_MAX = 1000
LAST_ERROR_MAX = 2000


def due_filter(business_now: datetime, real_now: datetime, lease_s: float) -> ColumnElement[bool]:
    leased = exists().where(
        NotificationAttempt.notification_id == Notification.id,
        NotificationAttempt.error == IN_FLIGHT,
        NotificationAttempt.at > real_now - timedelta(seconds=lease_s),
    )
    return and_(
        or_(
            and_(Notification.status == "pending", Notification.not_before <= business_now),
            and_(Notification.status == "failed", Notification.not_before <= real_now),
        ),
        ~leased,
    )


def due_channels(session: Session, where: ColumnElement[bool]) -> list[tuple[int, int]]:
    """(channel id, due rows) for channels with due rows, the oldest due row's first."""
    query = (
        select(Notification.channel_id, func.count(Notification.id))
        .where(where)
        .group_by(Notification.channel_id)
        .order_by(func.min(Notification.id))
    )
    return [(channel_id, count) for channel_id, count in session.exec(query)]


def lock_channel(session: Session, channel_id: int, postgres: bool) -> Channel | None:
    """Serialise claims per channel across dispatchers (the rate budget is read-then-use).

    ``FOR NO KEY UPDATE`` does not block the engine inserting notifications that reference
    the channel (their foreign-key check takes ``KEY SHARE``)."""
    query = select(Channel).where(Channel.id == channel_id)
    if postgres:
        query = query.with_for_update(key_share=True)
    return session.exec(query).first()


def due_rows(
    session: Session, where: ColumnElement[bool], channel_id: int, limit: int, postgres: bool
) -> Sequence[Notification]:
    query = (
        select(Notification)
        .where(where, Notification.channel_id == channel_id)
        .order_by(col(Notification.id))
        .limit(limit)
    )
    if postgres:
        query = query.with_for_update(skip_locked=True)
    return session.exec(query).all()


def mark_stale_claims_lost(session: Session, notification_ids: Sequence[int]) -> None:
    if notification_ids:
        session.execute(
            update(NotificationAttempt)
            .where(
                col(NotificationAttempt.notification_id).in_(notification_ids),
                NotificationAttempt.error == IN_FLIGHT,
            )
            .values(error=LOST)
        )


def open_attempt(
    session: Session, notification_id: int, at: datetime, excerpt: str | None = None
) -> NotificationAttempt:
    attempt = NotificationAttempt(
        notification_id=notification_id, at=at, ok=False, error=IN_FLIGHT, response_excerpt=excerpt
    )
    session.add(attempt)
    return attempt


def finish_dead(session: Session, row: Notification, at: datetime, reason: str) -> None:
    """A row that cannot be sent at all (channel gone or disallowed, no template)."""
    session.add(
        NotificationAttempt(notification_id=row.id, at=at, ok=False, error=reason[:ERROR_MAX])
    )
    row.attempts += 1
    row.status = "dead"
    row.last_error = reason[:LAST_ERROR_MAX]
    session.add(row)


def release(session: Session, attempt_ids: Sequence[int]) -> None:
    """Give claimed rows back unsent: drop their in-flight attempts (nothing was sent)."""
    if attempt_ids:
        session.execute(
            delete(NotificationAttempt).where(
                col(NotificationAttempt.id).in_(attempt_ids),
                NotificationAttempt.error == IN_FLIGHT,
            )
        )


def requeue(session: Session, notification_id: int, now: datetime | None = None) -> Notification:
    """``POST /notifications/{id}/retry``: send this row again as soon as possible.

    The row moves to ``failed`` with ``not_before`` = now on the *real* clock, so it is due
    at once whatever the business clock says, and gets a fresh set of attempts (the
    history stays in ``notification_attempts``). A row still in flight keeps its lease.
    Raises LookupError for an unknown id and ValueError for a row already sent. Flushes;
    the caller's unit of work commits.
    """
    row = session.get(Notification, notification_id)
    if row is None:
        raise LookupError(f"notification {notification_id} not found")
    if row.status == "sent":
        raise ValueError(f"notification {notification_id} was already sent")
    row.status = "failed"
    row.not_before = now or utcnow()
    row.attempts = 0
    session.add(row)
    session.flush()
    return row
