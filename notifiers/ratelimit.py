"""Per-robot rate limits kept in the database, so every dispatcher process shares them.

No table of its own: the budget is read from ``notification_attempts``. An attempt row is
written when a row is *claimed* (``error = IN_FLIGHT``) and completed after the send, so
a message counts against its robot's window from the moment any dispatcher decides to
send it until its answer is recorded, and from then on from that moment (after its
arrival at the platform, which counts arrivals): a burst claimed at once but delivered
over a few seconds never lets the next burst in early. One platform message is one counted attempt: the extra rows of a digest carry
``response_excerpt`` starting with :data:`DIGEST_MEMBER` and are not counted again.

All instants here are real time (the platforms count in real time), never business time.
The caller serialises budget checks per channel by locking the channel row (PostgreSQL)
or by SQLite's single writer.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, or_
from sqlmodel import Session, select

from notifiers.base import ChannelPolicy
from service.models import Notification, NotificationAttempt

IN_FLIGHT = "in flight: sent, outcome not yet recorded"
THROTTLED = "throttled: "
DIGEST_MEMBER = "digest member of notification "


def _of_channel(channel_id: int):
    """The channel filter, written so that it cannot drive the query.

    The recent attempts (``at > since``: one window's worth, whatever the history) must be
    found first through ``ix_notification_attempts_at``. Given an index on the channel,
    SQLite's planner would rather start from it and walk every notification the robot was
    ever sent (8.7 ms instead of 1.1 ms at 100,000 sent). ``+ 0`` keeps the column out of
    any index there is or will be, on both databases."""
    return (Notification.channel_id + 0) == channel_id


def messages_since(session: Session, channel_id: int, since: datetime) -> int:
    """Platform messages sent (or being sent) to this channel after ``since``."""
    counted = or_(NotificationAttempt.ok == True, NotificationAttempt.error == IN_FLIGHT)  # noqa: E712
    not_member = or_(
        NotificationAttempt.response_excerpt.is_(None),
        ~NotificationAttempt.response_excerpt.startswith(DIGEST_MEMBER, autoescape=True),
    )
    query = (
        select(func.count(NotificationAttempt.id))
        .join(Notification, Notification.id == NotificationAttempt.notification_id)
        .where(
            _of_channel(channel_id),
            NotificationAttempt.at > since,
            counted,
            not_member,
        )
    )
    return int(session.exec(query).one())


def throttled_since(session: Session, channel_id: int, since: datetime) -> bool:
    """Whether the platform told us "too fast" for this channel after ``since``."""
    query = (
        select(NotificationAttempt.id)
        .join(Notification, Notification.id == NotificationAttempt.notification_id)
        .where(
            _of_channel(channel_id),
            NotificationAttempt.at > since,
            NotificationAttempt.error.startswith(THROTTLED, autoescape=True),
        )
        .limit(1)
    )
    return session.exec(query).first() is not None


def budget(session: Session, channel_id: int, policy: ChannelPolicy, now: datetime) -> int | None:
    """How many more messages this channel may take right now; ``None`` means no limit."""
    if not policy.limits:
        return None
    if throttled_since(session, channel_id, now - timedelta(seconds=policy.pause_after_throttle_s)):
        return 0
    left = min(
        limit.max_messages
        - messages_since(session, channel_id, now - timedelta(seconds=limit.window_s))
        for limit in policy.limits
    )
    return max(0, left)
