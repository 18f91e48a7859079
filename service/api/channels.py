"""Channels (where a unit's notifications go), outbound webhook subscriptions, the outbox."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import or_
from sqlmodel import Session, select

from notifiers.allowlist import check_url
from notifiers.claims import requeue
from service.api.blocker_views import units_in_scope, visibility_clause
from service.api.common import (
    ERROR_RESPONSES,
    Cursor,
    Limit,
    Page,
    RowId,
    Strict,
    decode_cursor,
    local_iso,
    page_of,
    unit_by_code,
)
from service.auth import Principal, require_scope
from service.deps import Caller, ReadSession, UnitOfWorkRoute, WriteSession
from service.idempotency import idempotent
from service.models import (
    Blocker,
    Channel,
    Notification,
    NotificationAttempt,
    Unit,
    WebhookSubscription,
)
from service.problems import Problem
from workflows.outbox import EVENT_NAMES

router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES, route_class=UnitOfWorkRoute)

EVENT_TYPES = (
    "*",
    *sorted(
        set(EVENT_NAMES.values()) | {"blocker.verified", "blocker.returned", "blocker.escalated"}
    ),
    # The action names are accepted too.
    "blocker.create",
    "blocker.assign",
    "blocker.acknowledge",
    "blocker.report_resolved",
    "blocker.verify",
    "blocker.close",
    "blocker.withdraw",
    "blocker.request_escalation",
    "blocker.deadline_passed",
    "blocker.climb",
    "blocker.reschedule",
    "blocker.acknowledge_missed",
    "blocker.remind_deadline",
    "blocker.feedback_missed",
    "blocker.remind_verify",
)


class ChannelCreate(Strict):
    unit: str = Field(min_length=1, max_length=64)
    kind: Literal["wecom", "dingtalk", "feishu", "webhook", "email"]
    url: str = Field(
        min_length=1,
        max_length=2000,
        examples=["https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx"],
    )
    secret: str | None = Field(
        None, max_length=500, description="DingTalk/Feishu signing secret, webhook HMAC key"
    )


class ChannelOut(BaseModel):
    id: int
    unit: str
    kind: str
    url: str
    has_secret: bool
    enabled: bool
    created_at: str | None


def _check(url: str, request: Request, field: str = "url") -> None:
    try:
        check_url(url, request.app.state.settings.allowed_hosts)
    except ValueError as exc:
        raise Problem(422, f"{field}: {exc}", field=field) from exc


def channel_out(session: Session, channel: Channel, request: Request) -> ChannelOut:
    unit = session.get(Unit, channel.unit_id)
    return ChannelOut(
        id=channel.id,
        unit=unit.code if unit else "",
        kind=channel.kind,
        url=channel.url,
        has_secret=bool(channel.secret),
        enabled=channel.enabled,
        created_at=local_iso(channel.created_at, request.app.state.settings.tz),
    )


@router.post("/channels", status_code=201, response_model=ChannelOut, tags=["channels"])
def create_channel(body: ChannelCreate, request: Request, session: WriteSession, caller: Caller):
    """Bind a unit to a WeCom / DingTalk / Feishu robot, a signed webhook or an e-mail address (admin)."""
    require_scope(caller, "admin")
    _check(body.url, request)
    if body.kind in ("webhook",) and not body.secret:
        raise Problem(
            422, "secret: a webhook channel needs a secret to sign its deliveries.", field="secret"
        )

    def create() -> tuple[int, ChannelOut]:
        unit = unit_by_code(session, body.unit)
        channel = Channel(
            unit_id=unit.id,
            kind=body.kind,
            url=body.url,
            secret=body.secret,
            created_at=request.app.state.ctx.clock.now(),
        )
        session.add(channel)
        session.flush()
        return 201, channel_out(session, channel, request)

    return idempotent(request, session, caller, body, create)


@router.get("/channels", response_model=Page[ChannelOut], tags=["channels"])
def list_channels(
    request: Request,
    session: ReadSession,
    caller: Caller,
    unit: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ChannelOut]:
    after = decode_cursor(cursor)
    query = select(Channel).join(Unit, Unit.id == Channel.unit_id).where(Channel.id > after)
    if not caller.has("admin"):
        query = query.where(Unit.path.startswith(caller.scope_path or "//"))
    if unit:
        query = query.where(Unit.code == unit)
    rows = list(session.exec(query.order_by(Channel.id).limit(limit + 1)))
    return page_of(rows, limit, lambda c: channel_out(session, c, request))


class WebhookCreate(Strict):
    url: str = Field(
        min_length=1, max_length=2000, examples=["https://gtzz.example.gov.cn/duban/hook"]
    )
    secret: str = Field(min_length=8, max_length=500)
    events: list[Literal[EVENT_TYPES]] = Field(
        min_length=1,
        max_length=20,  # type: ignore[valid-type]
        examples=[["blocker.escalated", "blocker.close"]],
    )


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str]
    unit: str | None
    channel_id: int | None
    created_at: str | None


@router.post("/webhooks", status_code=201, response_model=WebhookOut, tags=["webhooks"])
def create_webhook(body: WebhookCreate, request: Request, session: WriteSession, caller: Caller):
    """Subscribe a system to blocker events, delivered as signed POSTs (X-Duban-Signature)."""
    require_scope(caller, "write")
    _check(body.url, request)

    def create() -> tuple[int, WebhookOut]:
        # The delivery channel hangs off the caller's unit (the admin's: the root unit);
        # the outbox never treats a subscription's channel as the unit's own chat channel.
        owner = caller.unit_id or session.exec(select(Unit.id).order_by(Unit.id)).first()
        if owner is None:
            raise Problem(422, "Create the unit tree before subscribing webhooks.")
        # The subscription sees what the key sees: a city taskforce's key, the whole city.
        scope = session.exec(select(Unit).where(Unit.path == caller.scope_path)).first()
        unit_id = None if caller.has("admin") else (scope.id if scope else caller.unit_id)
        now = request.app.state.ctx.clock.now()
        channel = Channel(
            unit_id=owner, kind="webhook", url=body.url, secret=body.secret, created_at=now
        )
        session.add(channel)
        session.flush()
        sub = WebhookSubscription(
            url=body.url,
            secret=body.secret,
            events=sorted(set(body.events)),
            unit_id=unit_id,
            channel_id=channel.id,
            created_at=now,
        )
        session.add(sub)
        session.flush()
        unit = session.get(Unit, unit_id) if unit_id else None
        return 201, WebhookOut(
            id=sub.id,
            url=sub.url,
            events=sub.events,
            unit=unit.code if unit else None,
            channel_id=channel.id,
            created_at=local_iso(sub.created_at, request.app.state.settings.tz),
        )

    return idempotent(request, session, caller, body, create)


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
        or_(WebhookSubscription.unit_id.is_(None), WebhookSubscription.unit_id.not_in(in_units)),
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
    blocker: Annotated[int | None, Query(ge=1, le=2**62)] = None,
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
    requeue(session, notification_id)
    return JSONResponse({"id": notification_id, "status": "pending"}, status_code=202)
