"""The outbox as callers see it: notifications with their attempts, and retrying one."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import or_
from sqlmodel import Session, select

from notifiers.claims import in_flight, requeue, requeue_many
from service.api.blocker_views import units_in_scope, visibility_clause, visible_blocker_or_404
from service.api.common import (
    ERROR_RESPONSES,
    MAX_ID,
    BodyId,
    Cursor,
    Limit,
    Page,
    RowId,
    Strict,
    decode_cursor,
    local_iso,
    page_of,
)
from service.auth import Principal, require_scope
from service.deps import Caller, ReadSession, UnitOfWorkRoute, WriteSession
from service.models import (
    Blocker,
    Channel,
    Notification,
    NotificationAttempt,
    Unit,
    WebhookSubscription,
)
from service.problems import Problem

router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES, route_class=UnitOfWorkRoute)


class AttemptOut(BaseModel):
    at: str | None
    status_code: int | None
    response_excerpt: str | None
    error: str | None


class NotificationOut(BaseModel):
    id: int
    blocker_id: int | None
    channel: int
    channel_kind: str
    kind: str
    event_type: str
    status: str
    attempts: int = Field(
        description="Delivery attempts made in all, manual retries included (each one is in "
        "attempt_log); a manual retry starts a fresh series of automatic ones"
    )
    last_error: str | None
    delivery_id: str
    mentions: list[str]
    not_before: str | None
    created_at: str | None
    sent_at: str | None
    attempt_log: list[AttemptOut]


def notification_out(session: Session, row: Notification, request: Request) -> NotificationOut:
    tz = request.app.state.settings.tz
    channel = session.get(Channel, row.channel_id)
    attempts = session.exec(
        select(NotificationAttempt)
        .where(NotificationAttempt.notification_id == row.id)
        .order_by(NotificationAttempt.id)
    ).all()
    return NotificationOut(
        id=row.id,
        blocker_id=row.blocker_id,
        channel=row.channel_id,
        channel_kind=channel.kind if channel else "",
        kind=row.kind,
        event_type=row.event_type,
        status=row.status,
        # row.attempts counts the current series only (the backoff and the give-up limit).
        attempts=max(row.attempts, len(attempts)),
        last_error=row.last_error,
        delivery_id=row.delivery_id,
        mentions=list(row.mentions),
        not_before=local_iso(row.not_before, tz),
        created_at=local_iso(row.created_at, tz),
        sent_at=local_iso(row.sent_at, tz),
        attempt_log=[
            AttemptOut(
                at=local_iso(a.at, tz),
                status_code=a.status_code,
                response_excerpt=a.response_excerpt,
                error=a.error,
            )
            for a in attempts
        ],
    )


def notification_clause(caller: Principal):
    """The outbox rows a key sees; None means all (admin). Those sent to its own units'
    channels, and those about its blockers, except deliveries to another party's webhook
    subscription (another system's, or one the admin made for the whole city)."""
    clause = visibility_clause(caller)
    if clause is None:
        return None
    in_units = units_in_scope(caller)
    foreign = select(WebhookSubscription.channel_id).where(
        WebhookSubscription.channel_id.is_not(None),
        or_(
            WebhookSubscription.unit_id.is_(None),
            WebhookSubscription.unit_id.not_in(in_units),
            # Another key's (another system's, even of the same unit).
            WebhookSubscription.api_key_id.is_not(None)
            & (WebhookSubscription.api_key_id != caller.key_id),
        ),
    )
    own_channels = select(Channel.id).where(Channel.unit_id.in_(in_units))
    # (A subscription's channel is filed under some unit too; it is never "its own".)
    return Notification.channel_id.not_in(foreign) & or_(
        Notification.channel_id.in_(own_channels),
        Notification.blocker_id.in_(select(Blocker.id).where(clause)),
    )


@router.get("/notifications", response_model=Page[NotificationOut], tags=["notifications"])
def list_notifications(
    request: Request,
    session: ReadSession,
    caller: Caller,
    status: Literal["pending", "sent", "failed", "dead"] | None = None,
    blocker: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[NotificationOut]:
    """Outbox rows with their delivery attempts."""
    after = decode_cursor(cursor)
    query = select(Notification).where(Notification.id > after)
    clause = notification_clause(caller)
    if clause is not None:
        query = query.where(clause)
    if status:
        query = query.where(Notification.status == status)
    if blocker is not None:
        query = query.where(Notification.blocker_id == blocker)
    rows = list(session.exec(query.order_by(Notification.id).limit(limit + 1)))
    return page_of(rows, limit, lambda r: notification_out(session, r, request))


@router.post(
    "/notifications/{notification_id}/retry",
    status_code=202,
    response_model=NotificationOut,
    tags=["notifications"],
    responses={409: ERROR_RESPONSES[409]},
)
def retry_notification(
    notification_id: RowId, request: Request, session: WriteSession, caller: Caller
) -> Any:
    """Requeue a dead (or failed) notification; it keeps its delivery id."""
    require_scope(caller, "write")
    row = session.get(Notification, notification_id)
    clause = notification_clause(caller)
    visible = row is not None and (
        clause is None
        or session.exec(select(Notification.id).where(Notification.id == row.id, clause)).first()
        is not None
    )
    if row is None:
        raise Problem(404, f"There is no notification {notification_id}.")
    if not visible:
        raise Problem(403, f"Notification {notification_id} is outside this key's jurisdiction.")
    if row.status == "sent":
        raise Problem(
            409, "This notification was delivered; there is nothing to retry.", allowed_actions=[]
        )
    if in_flight(session, notification_id):
        # Its outcome is about to be recorded and would overwrite the retry.
        raise Problem(
            409,
            "This notification is being sent right now. Look at it again in a minute: "
            "retry it then if it failed or went dead.",
            allowed_actions=[],
        )
    requeued = requeue(session, notification_id)
    # The row as it now stands: `failed`, due again at once (real time), attempts kept.
    answer = notification_out(session, requeued, request)
    return JSONResponse(answer.model_dump(mode="json"), status_code=202)


class RetryMany(Strict):
    status: Literal["dead", "failed"] = Field(
        default="dead",
        description="Which rows: `dead` (given up on) or `failed` (waiting for their next "
        "automatic try, which this brings forward)",
    )
    channel: BodyId | None = Field(default=None, description="Only the rows to this channel")
    blocker: BodyId | None = Field(default=None, description="Only the rows about this blocker")


class RetryManyOut(BaseModel):
    requeued: int = Field(description="Rows due again at once, each with its own delivery id")


@router.post(
    "/notifications/retry", status_code=202, response_model=RetryManyOut, tags=["notifications"]
)
def retry_notifications(body: RetryMany, session: WriteSession, caller: Caller) -> RetryManyOut:
    """Requeue, at once, every dead (or failed) notification this key may retry: after a
    receiver's outage, or once a chat robot's key is fixed. Each keeps its delivery id, so
    receivers dedupe as usual; rows being sent right now are left to finish."""
    require_scope(caller, "write")
    # A filter this key could not have learnt of is not found, whether it exists or not.
    if body.channel is not None and not _sees_channel(session, caller, body.channel):
        raise Problem(404, f"There is no channel {body.channel} that this key can see.")
    if body.blocker is not None:
        visible_blocker_or_404(session, caller, body.blocker)
    where = Notification.status == body.status
    clause = notification_clause(caller)
    if clause is not None:
        where = where & clause
    if body.channel is not None:
        where = where & (Notification.channel_id == body.channel)
    if body.blocker is not None:
        where = where & (Notification.blocker_id == body.blocker)
    return RetryManyOut(requeued=requeue_many(session, where))


def _sees_channel(session: Session, caller: Principal, channel_id: int) -> bool:
    """A unit's channel within the key's jurisdiction, or a subscription the key made."""
    channel = session.get(Channel, channel_id)
    if channel is None or caller.is_admin:
        return channel is not None
    sub = session.exec(
        select(WebhookSubscription).where(WebhookSubscription.channel_id == channel_id)
    ).first()
    if sub is not None and sub.api_key_id is not None:
        return sub.api_key_id == caller.key_id
    unit = session.get(Unit, sub.unit_id if sub is not None else channel.unit_id)
    return unit is not None and caller.sees_path(unit.path)
