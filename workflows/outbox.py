"""Write notification rows in the caller's transaction (the transactional outbox)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, select

from service.db import among, among_selected, mostly_true
from service.models import Channel, Notification, NotificationAttempt, Unit
from service.models.blocker import is_overdue
from workflows.calendar import WorkingDayCalendar
from workflows.world import World, subscription_channels


def message_context(
    world: World, blocker: Any, cal: WorkingDayCalendar, read_at: datetime, **extra: Any
) -> dict[str, Any]:
    """What a message says about the blocker, as it stands when the message is read
    (`read_at`: when it may be sent, after any hold for office hours). A reminder written
    at 23:59:59 and sent at 08:30 says how many working days are left at 08:30, as the
    daily digest half an hour later does."""
    project = world.project(blocker.project_id)
    unit = world.unit(blocker.unit_id)
    today = cal.local_date(read_at)
    days_left = (
        world.working_days_left(cal, today, blocker.deadline)
        if blocker.deadline is not None
        else None
    )
    return {
        "blocker_id": blocker.id,
        "title": blocker.title,
        "category": blocker.category,
        "state": blocker.state,
        "project_code": project.code if project else "",
        "project_name": project.name if project else "",
        "unit_name": unit.name if unit else "",
        "deadline": blocker.deadline.isoformat() if blocker.deadline else None,
        "working_days_left": days_left,
        # Calendar days: a deadline on a Saturday is no working day away on Friday, but it
        # is not due today either; Friday is then the last working day before it.
        "days_left": (blocker.deadline - today).days if blocker.deadline is not None else None,
        "working_today": cal.is_working_day(today),
        "overdue": is_overdue(blocker, read_at),
        "level": blocker.escalation_level,
        **extra,
    }


def notification_row(
    *,
    blocker_id: int,
    channel_id: int,
    kind: str,
    event_type: str,
    urgent: bool,
    context: dict[str, Any],
    not_before: datetime,
    created_at: datetime,
    mentions: list[str] | None = None,
) -> dict[str, Any]:
    """A complete outbox row; every delivery gets its own id, kept across retries.
    `created_at` is business time, as on the timeline: the moment of what caused it."""
    return {
        "blocker_id": blocker_id,
        "channel_id": channel_id,
        "kind": kind,
        "event_type": event_type,
        "delivery_id": uuid.uuid4().hex,
        "status": "pending",
        "urgent": urgent,
        "mentions": list(mentions or []),
        "context": context,
        "attempts": 0,
        "last_error": None,
        "not_before": not_before,
        "created_at": created_at,
        "sent_at": None,
    }


def enqueue_for_unit(
    world: World,
    *,
    blocker: Any,
    unit: Unit,
    template: str,
    event_type: str,
    context: dict[str, Any],
    not_before: datetime,
    urgent: bool,
    now: datetime,
) -> int:
    channels = world.chat_channels(unit.id)
    if not channels:
        return 0
    mentions = world.mentions(blocker, unit)
    for channel_id in channels:
        world.add(
            Notification,
            notification_row(
                blocker_id=blocker.id,
                channel_id=channel_id,
                kind=template,
                event_type=event_type,
                urgent=urgent,
                mentions=mentions,
                context={**context, "recipient_unit": unit.name},
                not_before=not_before,
                created_at=now,
            ),
        )
    return len(channels)


# Outbound event names: the past tense of what happened. A subscription may also name the
# action itself ("blocker.close"); both match.
EVENT_NAMES = {
    "create": "blocker.created",
    "assign": "blocker.assigned",
    "acknowledge": "blocker.acknowledged",
    "feedback": "blocker.feedback",
    "report_resolved": "blocker.resolved",
    "close": "blocker.closed",
    "withdraw": "blocker.withdrawn",
    "request_escalation": "blocker.escalation_requested",
    "deadline_passed": "blocker.overdue",
    "reschedule": "blocker.rescheduled",
    # What the timers do (their actions are not subscribers' vocabulary).
    "acknowledge_missed": "blocker.acknowledgement_missed",
    "remind_deadline": "blocker.deadline_reminder",
    "feedback_missed": "blocker.feedback_missed",
    "remind_verify": "blocker.verification_reminder",
    "climb": "blocker.climbed",
    # The escalation queue worked (an entry acknowledged, handled): also timeline events.
    "escalation_acknowledge": "blocker.escalation_acknowledged",
    "escalation_handle": "blocker.escalation_handled",
}


def event_name(action: str, payload: dict[str, Any] | None = None) -> str:
    if action == "verify":
        return "blocker.verified" if (payload or {}).get("satisfied") else "blocker.returned"
    return EVENT_NAMES.get(action, f"blocker.{action}")


def blocker_snapshot(world: World, blocker: Any, cal: WorkingDayCalendar, now: datetime) -> dict:
    """What every webhook says of the blocker as it now stands, so a receiving system can
    mirror it from the deliveries alone (docs/integration.md)."""
    unit = world.unit(blocker.unit_id)
    project = world.project(blocker.project_id)
    return {
        "state": blocker.state,
        "escalation_level": blocker.escalation_level,
        "version": blocker.version,
        "project": project.code if project else None,
        "unit": unit.code if unit else None,
        "deadline": blocker.deadline.isoformat() if blocker.deadline else None,
        "due_at": blocker.due_at.astimezone(cal.tz).isoformat() if blocker.due_at else None,
        "overdue": is_overdue(blocker, now),
        "external_ref": blocker.external_ref,
    }


def enqueue_webhooks(
    world: World,
    *,
    blocker: Any,
    event_type: str,
    body: dict[str, Any],
    now: datetime,
    aliases: tuple[str, ...] = (),
) -> int:
    """Signed outbound webhooks to subscribed systems, sent at once (no office hours)."""
    channels = world.subscribers(blocker, frozenset({event_type, *aliases}))
    for channel_id in channels:
        world.add(
            Notification,
            notification_row(
                blocker_id=blocker.id,
                channel_id=channel_id,
                kind="webhook",
                event_type=event_type,
                urgent=True,
                context={"type": event_type, **body},
                not_before=now,
                created_at=now,
            ),
        )
    return len(channels)


CHAT_KINDS = ("wecom", "dingtalk", "feishu", "email")


def chat_channels(session: Session, unit_ids: Iterable[int] | None = None) -> list[Channel]:
    """Enabled chat channels (of `unit_ids`, or all) that are units' groups, not the
    channels behind webhook subscriptions."""
    query = select(Channel).where(
        Channel.enabled == True,  # noqa: E712
        Channel.kind.in_(CHAT_KINDS),
        Channel.id.not_in(subscription_channels()),
    )
    if unit_ids is not None:
        query = query.where(Channel.unit_id.in_(list(unit_ids)))
    return list(session.exec(query.order_by(Channel.id)))


def already_written(session: Session, delivery_id: str) -> bool:
    """Whether a row with this delivery id exists: messages keyed by day or month."""
    found = select(Notification.id).where(Notification.delivery_id == delivery_id)
    return session.exec(found).first() is not None


def add_unit_message(
    session: Session,
    channel: Channel,
    *,
    kind: str,
    event_type: str,
    delivery_id: str,
    context: dict[str, Any],
    now: datetime,
    mentions: list[str] | None = None,
) -> None:
    """A message to a unit's group about no one blocker (a digest, a briefing)."""
    session.add(
        Notification(
            blocker_id=None,
            channel_id=channel.id,
            kind=kind,
            event_type=event_type,
            delivery_id=delivery_id,
            mentions=list(mentions or []),
            context=context,
            not_before=now,
            created_at=now,
        )
    )


# Reminders (templates) that an action can make untrue before they go out: held for office
# hours, or waiting in a robot's queue, while the blocker moves on.
REMINDER_KINDS = (
    "acknowledge_reminder",
    "deadline_reminder",
    "feedback_reminder",
    "verify_reminder",
)


def unsent_reminders(session: Session, blocker_ids: list[int], *columns: Any) -> Any:
    """A query of the blockers' reminder rows to people (chat groups, e-mail) that no
    dispatcher has tried (their ids, or the `columns` given). A system behind a unit's
    webhook channel gets them still: what the timer did is a fact of the timeline."""
    tried = select(NotificationAttempt.id).where(
        NotificationAttempt.notification_id == Notification.id
    )
    to_people = select(Channel.id).where(Channel.kind.in_(CHAT_KINDS))
    return select(*(columns or (Notification.id,))).where(
        among(session, Notification.blocker_id, blocker_ids),
        mostly_true(session, Notification.status == "pending"),
        Notification.kind.in_(REMINDER_KINDS),
        Notification.channel_id.in_(to_people),
        ~tried.exists(),
    )


def drop_unsent(session: Session, query: Any, postgres: bool) -> int:
    """Delete the untried outbox rows `query` selects (`unsent_reminders`), because what
    they say is no longer true: a withdrawn blocker is not told on Monday that its feedback
    is late, nor a unit that signed for an assignment at 08:00 told to sign for it. A row a
    dispatcher has locked to send is left to it (it is on its way)."""
    if postgres:
        query = query.with_for_update(skip_locked=True)
    result = session.execute(
        delete(Notification)
        .where(among_selected(session, Notification.id, query))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


# What an action makes untrue even when the blocker stays where it is.
UNTRUE_WITHOUT_MOVING = {"feedback": ("feedback_reminder",)}


def untrue_kinds(action: str, state_before: str, state_after: str) -> tuple[str, ...]:
    """The reminder kinds an action makes untrue: all of them when the blocker changes
    state; late feedback when feedback comes."""
    if state_before != state_after:
        return REMINDER_KINDS
    return UNTRUE_WITHOUT_MOVING.get(action, ())
