"""Write notification rows in the caller's transaction (the transactional outbox)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from service.models import (
    Blocker,
    Channel,
    Notification,
    Officer,
    Project,
    Unit,
    WebhookSubscription,
)
from workflows.calendar import WorkingDayCalendar


def _mentions(session: Session, blocker: Blocker, unit: Unit) -> list[str]:
    if blocker.officer_id and blocker.unit_id == unit.id:
        officer = session.get(Officer, blocker.officer_id)
        if officer is not None:
            return [officer.mobile]
    leads = session.exec(
        select(Officer.mobile)
        .where(Officer.unit_id == unit.id, Officer.role.in_(("lead", "leader", "liaison")))
        .order_by(Officer.id)
    )
    return list(leads)[:5]


def message_context(
    session: Session, blocker: Blocker, cal: WorkingDayCalendar, now: datetime, **extra: Any
) -> dict[str, Any]:
    project = session.get(Project, blocker.project_id)
    unit = session.get(Unit, blocker.unit_id) if blocker.unit_id else None
    today = cal.local_date(now)
    days_left = (
        cal.working_days_between(today, blocker.deadline) if blocker.deadline is not None else None
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
        "overdue": bool(blocker.due_at and now > blocker.due_at),
        "level": blocker.escalation_level,
        **extra,
    }


def enqueue_for_unit(
    session: Session,
    *,
    blocker: Blocker,
    unit: Unit,
    template: str,
    event_type: str,
    context: dict[str, Any],
    not_before: datetime,
    urgent: bool,
) -> int:
    subscription_channels = select(WebhookSubscription.channel_id).where(
        WebhookSubscription.channel_id.is_not(None)
    )
    channels = session.exec(
        select(Channel).where(
            Channel.unit_id == unit.id,
            Channel.enabled == True,  # noqa: E712
            Channel.id.not_in(subscription_channels),
        )
    )
    mentions = _mentions(session, blocker, unit)
    count = 0
    for channel in channels:
        session.add(
            Notification(
                blocker_id=blocker.id,
                channel_id=channel.id,
                kind=template,
                event_type=event_type,
                delivery_id=uuid.uuid4().hex,
                urgent=urgent,
                mentions=mentions,
                context={**context, "recipient_unit": unit.name},
                not_before=not_before,
            )
        )
        count += 1
    return count


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
}


def event_name(action: str, payload: dict[str, Any] | None = None) -> str:
    if action == "verify":
        return "blocker.verified" if (payload or {}).get("satisfied") else "blocker.returned"
    return EVENT_NAMES.get(action, f"blocker.{action}")


def enqueue_webhooks(
    session: Session,
    *,
    blocker: Blocker,
    event_type: str,
    body: dict[str, Any],
    now: datetime,
    aliases: tuple[str, ...] = (),
) -> int:
    """Signed outbound webhooks to subscribed systems, sent at once (no office hours)."""
    # Where the blocker sits: its responsible unit, or the project's county before assignment.
    home_id = blocker.unit_id
    if home_id is None:
        project = session.get(Project, blocker.project_id)
        home_id = project.county_unit_id if project else None
    home = session.get(Unit, home_id) if home_id else None
    unit_path = home.path if home else None
    count = 0
    names = {event_type, *(aliases or ())}
    for sub in session.exec(select(WebhookSubscription)):
        if sub.channel_id is None:
            continue
        if not names & set(sub.events) and "*" not in sub.events:
            continue
        if sub.unit_id is not None:
            owner = session.get(Unit, sub.unit_id)
            if owner is None or not (unit_path and unit_path.startswith(owner.path)):
                continue
        session.add(
            Notification(
                blocker_id=blocker.id,
                channel_id=sub.channel_id,
                kind="webhook",
                event_type=event_type,
                delivery_id=uuid.uuid4().hex,
                urgent=True,
                context={"type": event_type, **body},
                not_before=now,
            )
        )
        count += 1
    return count
