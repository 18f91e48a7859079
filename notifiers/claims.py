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

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    and_,
    bindparam,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    or_,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Session, col, select

from notifiers.ratelimit import IN_FLIGHT
from service.db import among, note_outbox
from service.models import Channel, Notification, NotificationAttempt
from service.models.types import utcnow

LEASE_S = 60.0  # how long a claim holds a row before it counts as lost
LOST = "lost: claimed but no outcome recorded before the lease ran out (dispatcher stopped?)"
EXCERPT_MAX = 500
ERROR_MAX = 1000
LAST_ERROR_MAX = 2000

log = logging.getLogger(__name__)


def plan_for_the_values(session: Session) -> None:
    """On PostgreSQL, plan this transaction's statements for the values they are given.

    psycopg prepares a statement once it has run five times, and PostgreSQL may then keep
    one generic plan for it. A plan picked while the outbox was small, or before it was
    analysed, stays slow as the outbox grows (claims of ~50 ms, stalls of seconds, seen in
    `bench.deliveries`). The outbox's few statements are cheap to plan each time."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


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


@dataclass(frozen=True)
class Due:
    id: int
    channel_id: int
    rank: int  # 1: the channel's oldest due row
    backlog: int  # due rows of the channel in all


def ranked_due(session: Session, where: ColumnElement[bool], *, cap: int, limit: int) -> list[Due]:
    """Due rows with the channels taking turns: every channel's oldest row first (oldest
    channel first), then every channel's second, …; at most ``cap`` per channel and
    ``limit`` in all. One scan of the due rows, however many channels there are."""
    per_channel = {"partition_by": Notification.channel_id}
    ranked = (
        select(
            Notification.id,
            Notification.channel_id,
            func.row_number().over(order_by=Notification.id, **per_channel).label("rank"),
            func.count().over(**per_channel).label("backlog"),
        )
        .where(where)
        .subquery()
    )
    query = (
        select(ranked.c.id, ranked.c.channel_id, ranked.c.rank, ranked.c.backlog)
        .where(ranked.c.rank <= cap)
        .order_by(ranked.c.rank, ranked.c.id)
        .limit(limit)
    )
    return [Due(*row) for row in session.execute(query)]


def load_channels(session: Session, channel_ids: Sequence[int]) -> dict[int, Channel]:
    return {
        c.id: c
        for c in session.exec(select(Channel).where(among(session, Channel.id, channel_ids)))
    }


def lock_channels(session: Session, channel_ids: Sequence[int]) -> None:
    """Serialise claims per rate-limited channel across dispatchers (the budget is
    read-then-use), locking in id order so two dispatchers cannot deadlock (PostgreSQL).

    ``FOR NO KEY UPDATE`` does not block the engine inserting notifications that reference
    the channel (their foreign-key check takes ``KEY SHARE``). The rows are read again, so
    a channel disabled meanwhile is seen disabled."""
    if channel_ids:
        query = (
            select(Channel)
            .where(among(session, Channel.id, channel_ids))
            .order_by(col(Channel.id))
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        )
        list(session.exec(query))


class DueRow(Protocol):
    """An outbox row as a claim reads it: the columns it needs, no ORM object."""

    id: int
    channel_id: int
    blocker_id: int | None
    kind: str
    event_type: str
    delivery_id: str
    mentions: list[str]
    context: dict[str, Any]


def lock_due(
    session: Session,
    where: ColumnElement[bool],
    notification_ids: Sequence[int],
    leased_since: datetime,
    postgres: bool,
) -> list[DueRow]:
    """Read the chosen rows that are still due, skipping (PostgreSQL) rows another
    dispatcher is claiming right now."""
    if not notification_ids:
        return []
    table = Notification.__table__
    query = (
        select(
            table.c.id,
            table.c.channel_id,
            table.c.blocker_id,
            table.c.kind,
            table.c.event_type,
            table.c.delivery_id,
            table.c.mentions,
            table.c.context,
        )
        .where(among(session, table.c.id, notification_ids), where)
        .order_by(table.c.id)
    )
    if not postgres:  # the claim holds SQLite's write lock: nobody else is claiming
        return cast(list[DueRow], list(session.execute(query)))
    rows = list(session.execute(query.with_for_update(of=table, skip_locked=True)))
    # A row another dispatcher claimed and committed while this statement ran was locked
    # with this statement's older snapshot, which does not show that claim's attempt (the
    # row itself is unchanged, so PostgreSQL does not re-check it). The rows are ours now:
    # a new statement sees every claim committed before, so drop the ones leased meanwhile.
    leased = set(
        session.execute(
            select(NotificationAttempt.notification_id).where(
                among(session, NotificationAttempt.notification_id, [row.id for row in rows]),
                NotificationAttempt.error == IN_FLIGHT,
                NotificationAttempt.at > leased_since,
            )
        ).scalars()
    )
    return cast(list[DueRow], [row for row in rows if row.id not in leased])


def mark_stale_claims_lost(session: Session, notification_ids: Sequence[int]) -> set[int]:
    """Relabel the expired claims among these rows :data:`LOST`; returns the rows that had
    one (a send may have gone out for them)."""
    if not notification_ids:
        return set()
    table = NotificationAttempt.__table__
    relabelled = session.execute(
        update(table)
        .where(
            among(session, table.c.notification_id, notification_ids), table.c.error == IN_FLIGHT
        )
        .values(error=LOST)
        .returning(table.c.notification_id)
    )
    return set(relabelled.scalars())


def open_attempts(
    session: Session, claimed: Sequence[tuple[int, str | None]], at: datetime
) -> list[int]:
    """Write an in-flight attempt for each (notification id, excerpt), in one statement;
    returns their ids in the same order. A notification appears once."""
    if not claimed:
        return []
    table = NotificationAttempt.__table__
    columns = ["notification_id", "at", "ok", "error", "response_excerpt"]
    if session.get_bind().dialect.name == "postgresql":
        # Two array parameters rather than five per row: a statement psycopg parses once.
        given = (
            func.unnest(
                bindparam(None, [n for n, _ in claimed], type_=ARRAY(Integer)),
                bindparam(None, [e for _, e in claimed], type_=ARRAY(String)),
            )
            .table_valued("notification_id", "excerpt")
            .render_derived()
        )
        rows = select(
            given.c.notification_id,
            literal(at, table.c.at.type),
            false(),
            literal(IN_FLIGHT),
            given.c.excerpt,
        )
        opened = session.execute(
            insert(table).from_select(columns, rows).returning(table.c.notification_id, table.c.id)
        )
    else:  # executemany in batches of SQLite's parameter limit
        values = [dict(zip(columns, (n, at, False, IN_FLIGHT, e), strict=True)) for n, e in claimed]
        opened = session.execute(
            insert(table).returning(table.c.notification_id, table.c.id), values
        )
    attempt_of = {notification_id: attempt_id for notification_id, attempt_id in opened}
    return [attempt_of[notification_id] for notification_id, _ in claimed]


def complete_attempts(
    session: Session,
    outcomes: Iterable[tuple[int, int | None, bool, str | None, str | None]],
    at: datetime,
) -> None:
    """Record (attempt id, status code, ok, response excerpt, error) for each attempt, at
    `at` (real time, once the answers are in): a platform counts a message when it arrives,
    which is after the claim, so a robot's window runs from here, not from the claim.

    Attempts with the same outcome are updated by one statement: a round of 500 sends that
    all came back "200 ok" costs one UPDATE, not 500."""
    table = NotificationAttempt.__table__
    same: dict[tuple[int | None, bool, str | None, str | None], list[int]] = defaultdict(list)
    for attempt_id, status_code, ok, excerpt, error in outcomes:
        same[(status_code, ok, excerpt, error)].append(attempt_id)
    for (status_code, ok, excerpt, error), ids in same.items():
        session.execute(
            update(table)
            .where(among(session, table.c.id, ids))
            .values(status_code=status_code, ok=ok, response_excerpt=excerpt, error=error, at=at)
        )


def mark_sent(session: Session, notification_ids: Sequence[int], at: datetime) -> None:
    if notification_ids:
        table = Notification.__table__
        session.execute(
            update(table)
            .where(among(session, table.c.id, notification_ids))
            .values(status="sent", sent_at=at, last_error=None, attempts=table.c.attempts + 1)
        )


def lock_rows(
    session: Session, notification_ids: Sequence[int], postgres: bool
) -> dict[int, Notification]:
    query = select(Notification).where(among(session, Notification.id, notification_ids))
    if postgres:
        query = query.order_by(col(Notification.id)).with_for_update()
    return {row.id: row for row in session.exec(query)}


def finish_dead(session: Session, dead: Sequence[tuple[int, str]], at: datetime) -> None:
    """Rows that cannot be sent at all (channel gone or disallowed, no template): one
    attempt each saying why, and ``dead``. ``dead``: (notification id, reason)."""
    if not dead:
        return
    for n, reason in dead:
        log.warning("notification %s cannot be sent and is dead: %s", n, reason)
    session.execute(
        insert(NotificationAttempt.__table__),
        [
            {"notification_id": n, "at": at, "ok": False, "error": reason[:ERROR_MAX]}
            for n, reason in dead
        ],
    )
    table = Notification.__table__
    session.execute(
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values(status="dead", last_error=bindparam("reason"), attempts=table.c.attempts + 1),
        [{"row_id": n, "reason": reason[:LAST_ERROR_MAX]} for n, reason in dead],
    )


def release(session: Session, attempt_ids: Sequence[int]) -> None:
    """Give claimed rows back unsent: drop their in-flight attempts (nothing was sent)."""
    if attempt_ids:
        session.execute(
            delete(NotificationAttempt).where(
                among(session, NotificationAttempt.id, attempt_ids),
                NotificationAttempt.error == IN_FLIGHT,
            )
        )


def in_flight(session: Session, notification_id: int, lease_s: float = LEASE_S) -> bool:
    """Whether a dispatcher holds this row right now: claimed, outcome not yet recorded."""
    return (
        session.exec(
            select(NotificationAttempt.id).where(
                NotificationAttempt.notification_id == notification_id,
                NotificationAttempt.error == IN_FLIGHT,
                NotificationAttempt.at > utcnow() - timedelta(seconds=lease_s),
            )
        ).first()
        is not None
    )


def requeue(session: Session, notification_id: int, now: datetime | None = None) -> Notification:
    """``POST /notifications/{id}/retry``: send this row again as soon as possible.

    The row moves to ``failed`` with ``not_before`` = now on the *real* clock, so it is due
    at once whatever the business clock says, and gets a fresh set of attempts (the
    history stays in ``notification_attempts``). A row still in flight keeps its lease.
    A row not tried yet (``pending``) is left as it is: it goes out when it is due, and
    an office-hours hold is not jumped. Raises LookupError for an unknown id and
    ValueError for a row already sent. Flushes;
    the caller's unit of work commits.
    """
    row = session.get(Notification, notification_id)
    if row is None:
        raise LookupError(f"notification {notification_id} not found")
    if row.status == "sent":
        raise ValueError(f"notification {notification_id} was already sent")
    if row.status == "pending":
        return row  # not tried yet: it goes out when due (an office-hours hold stands)
    row.status = "failed"
    row.not_before = now or utcnow()
    row.attempts = 0
    session.add(row)
    session.flush()
    return row


def requeue_many(
    session: Session,
    where: ColumnElement[bool],
    now: datetime | None = None,
    lease_s: float = LEASE_S,
) -> int:
    """``POST /notifications/retry``: `requeue` every dead or failed row matching `where`
    (after an outage, a robot's key fixed), except rows on the wire right now, in one
    statement; returns how many. Rings the outbox bell; the caller's unit of work commits."""
    on_the_wire = exists().where(
        NotificationAttempt.notification_id == Notification.id,
        NotificationAttempt.error == IN_FLIGHT,
        NotificationAttempt.at > utcnow() - timedelta(seconds=lease_s),
    )
    result = session.execute(
        update(Notification)
        .where(where, col(Notification.status).in_(("dead", "failed")), ~on_the_wire)
        .values(status="failed", not_before=now or utcnow(), attempts=0)
        .execution_options(synchronize_session=False)
    )
    count = cast(int, result.rowcount)
    if count:
        note_outbox(session)
    return count
