"""Channels (where a unit's notifications go) and outbound webhook subscriptions."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, StrictBool, StringConstraints
from sqlalchemy import or_
from sqlmodel import Session, select

from notifiers.allowlist import check_url
from notifiers.email import parse_smtp_url
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
from service.auth import Principal, require_administers, require_scope
from service.deps import Caller, ReadSession, UnitOfWorkRoute, WriteSession
from service.idempotency import idempotent
from service.models import (
    Channel,
    Unit,
    WebhookSubscription,
)
from service.problems import Problem
from workflows.outbox import EVENT_NAMES
from workflows.world import subscription_channels

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
    "blocker.escalation_acknowledge",
    "blocker.escalation_handle",
)


# A secret is signed with exactly as given: never trimmed, or every signature would differ
# from the one the receiver computes with the secret it was told.
Secret = Annotated[str, StringConstraints(strip_whitespace=False)]


class ChannelCreate(Strict):
    unit: str = Field(min_length=1, max_length=64)
    kind: Literal["wecom", "dingtalk", "feishu", "webhook", "email"]
    url: str = Field(
        min_length=1,
        max_length=2000,
        examples=["https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx"],
    )
    secret: Secret | None = Field(
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


def _check_kind(kind: str, url: str) -> None:
    """An e-mail channel names its recipients in an smtp:// URL; the others are web URLs."""
    if kind == "email":
        try:
            parse_smtp_url(url)
        except ValueError as exc:
            raise Problem(422, f"url: {exc}.", field="url") from exc
    elif urlsplit(url).scheme.lower() not in ("http", "https"):
        raise Problem(422, f"url: a {kind} channel needs an https:// URL.", field="url")


def same_target(url: str) -> tuple:
    """What a URL points at, however it is spelt: the case of scheme and host, a default
    port, doubled or trailing slashes, empty or reordered query parameters, a fragment."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    port = parts.port or {"https": 443, "http": 80, "smtps": 465, "smtp": 25}.get(scheme)
    path = re.sub("/+", "/", parts.path).rstrip("/")
    return scheme, (parts.hostname or "").lower(), port, path, tuple(sorted(parse_qsl(parts.query)))


def _refuse_twin(session: Session, unit: Unit, kind: str, url: str, other_than: int | None = None):
    """One group, one channel: a second channel to the same robot sends everything twice."""
    target = same_target(url)
    for channel in session.exec(
        select(Channel).where(Channel.unit_id == unit.id, Channel.kind == kind)
    ):
        if channel.id != other_than and same_target(channel.url) == target:
            raise Problem(
                409,
                f"url: unit '{unit.code}' already has this {kind} channel ({channel.id}); "
                f"change it with PATCH /api/v1/channels/{channel.id}.",
                field="url",
            )


def masked_url(url: str, kind: str) -> str:
    """A robot's URL without the token in it (the key or access_token that lets anyone post
    to the group): what a unit's key is shown. Feishu puts its token in the path."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode([(k, "***") for k, _ in pairs], safe="*")
    path = parts.path
    if kind == "feishu" and "/" in path:
        path = path.rsplit("/", 1)[0] + "/***"
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def channel_out(
    session: Session, channel: Channel, request: Request, *, reveal: bool = True
) -> ChannelOut:
    unit = session.get(Unit, channel.unit_id)
    return ChannelOut(
        id=channel.id,
        unit=unit.code if unit else "",
        kind=channel.kind,
        url=channel.url if reveal else masked_url(channel.url, channel.kind),
        has_secret=bool(channel.secret),
        enabled=channel.enabled,
        created_at=local_iso(channel.created_at, request.app.state.settings.tz),
    )


@router.post("/channels", status_code=201, response_model=ChannelOut, tags=["channels"])
def create_channel(body: ChannelCreate, request: Request, session: WriteSession, caller: Caller):
    """Bind a unit to a WeCom / DingTalk / Feishu robot, a signed webhook or an e-mail address (admin)."""
    require_scope(caller, "admin")
    _check(body.url, request)
    _check_kind(body.kind, body.url)
    if body.kind in ("webhook",) and not body.secret:
        raise Problem(
            422, "secret: a webhook channel needs a secret to sign its deliveries.", field="secret"
        )

    def create() -> tuple[int, ChannelOut]:
        unit = unit_by_code(session, body.unit)
        require_administers(caller, unit)
        _refuse_twin(session, unit, body.kind, body.url)
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
    query = (
        select(Channel)
        .join(Unit, Unit.id == Channel.unit_id)
        .where(Channel.id > after, Channel.id.not_in(subscription_channels()))
    )
    if not caller.is_admin:
        query = query.where(Unit.path.startswith(caller.scope_path or "//"))
    if unit:
        query = query.where(Unit.code == unit)
    rows = list(session.exec(query.order_by(Channel.id).limit(limit + 1)))
    # Robot tokens only to whoever administers the unit (and set them up).
    return page_of(
        rows,
        limit,
        lambda c: channel_out(
            session, c, request, reveal=caller.administers(session.get(Unit, c.unit_id).path)
        ),
    )


class ChannelUpdate(Strict):
    url: str | None = Field(None, min_length=1, max_length=2000)
    secret: Secret | None = Field(None, max_length=500, description="null removes it")
    enabled: StrictBool | None = Field(None, description="false: nothing more goes to this channel")


@router.patch(
    "/channels/{channel_id}",
    response_model=ChannelOut,
    tags=["channels"],
    responses={404: ERROR_RESPONSES[404]},
)
def update_channel(
    channel_id: RowId, body: ChannelUpdate, request: Request, session: WriteSession, caller: Caller
) -> ChannelOut:
    """Fix a channel's URL or secret, or switch it off (admin). Then retry what went dead."""
    require_scope(caller, "admin")
    channel = session.get(Channel, channel_id)
    unit = session.get(Unit, channel.unit_id) if channel is not None else None
    # A subscription's channel is its key's (GET /api/v1/webhooks); only the bootstrap
    # admin, who sees every subscription, may change one here.
    theirs = channel is not None and not caller.is_admin and _carries_subscription(session, channel)
    if channel is None or unit is None or not caller.administers(unit.path) or theirs:
        raise Problem(404, f"There is no channel {channel_id} that this key administers.")
    given = body.model_fields_set
    if not given:
        raise Problem(422, "Give at least one of url, secret, enabled.")
    if "url" in given:
        if body.url is None:
            raise Problem(422, "url: a channel needs a URL.", field="url")
        _check(body.url, request)
        _check_kind(channel.kind, body.url)
        _refuse_twin(
            session, session.get(Unit, channel.unit_id), channel.kind, body.url, channel.id
        )
        channel.url = body.url
    if "secret" in given:
        if channel.kind == "webhook" and not body.secret:
            raise Problem(
                422,
                "secret: a webhook channel needs a secret to sign its deliveries.",
                field="secret",
            )
        channel.secret = body.secret
    if "enabled" in given:
        if body.enabled is None:
            raise Problem(422, "enabled: give true or false.", field="enabled")
        channel.enabled = body.enabled
    session.flush()
    return channel_out(session, channel, request)


class WebhookCreate(Strict):
    url: str = Field(
        min_length=1, max_length=2000, examples=["https://gtzz.example.gov.cn/duban/hook"]
    )
    secret: Secret = Field(
        min_length=1, max_length=500, description="Signs every delivery (HMAC-SHA256)"
    )
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
        # The same URL with the same secret twice would deliver every event twice, under two
        # delivery ids; with another secret it is a rotation in progress, and allowed.
        for sub in session.exec(_own_webhooks(caller)):
            if same_target(sub.url) == same_target(body.url) and sub.secret == body.secret:
                raise Problem(
                    409,
                    f"url: this key already subscribed {sub.url} with this secret ({sub.id}); "
                    "to change its events, remove it (DELETE /api/v1/webhooks/"
                    f"{sub.id}) and subscribe again.",
                    field="url",
                )
        # The delivery channel hangs off the caller's unit (the admin's: the root unit);
        # the outbox never treats a subscription's channel as the unit's own chat channel.
        owner = caller.unit_id or session.exec(select(Unit.id).order_by(Unit.id)).first()
        if owner is None:
            raise Problem(422, "Create the unit tree before subscribing webhooks.")
        # The subscription sees what the key sees: a city taskforce's key, the whole city.
        scope = session.exec(select(Unit).where(Unit.path == caller.scope_path)).first()
        unit_id = None if caller.is_admin else (scope.id if scope else caller.unit_id)
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
            api_key_id=caller.key_id,
            channel_id=channel.id,
            created_at=now,
        )
        session.add(sub)
        session.flush()
        return 201, webhook_out(session, sub, request)

    return idempotent(request, session, caller, body, create)


def webhook_out(session: Session, sub: WebhookSubscription, request: Request) -> WebhookOut:
    unit = session.get(Unit, sub.unit_id) if sub.unit_id else None
    return WebhookOut(
        id=sub.id,
        url=sub.url,
        events=sub.events,
        unit=unit.code if unit else None,
        channel_id=sub.channel_id,
        created_at=local_iso(sub.created_at, request.app.state.settings.tz),
    )


def _own_webhooks(caller: Principal):
    """The subscriptions a key may see and remove: the bootstrap admin, all; any other key,
    those it made (one made before keys were recorded: those of its unit)."""
    query = select(WebhookSubscription)
    if not caller.is_admin:
        query = query.join(Channel, Channel.id == WebhookSubscription.channel_id).where(
            or_(
                WebhookSubscription.api_key_id == caller.key_id,
                # Made before keys were recorded by a unit's key (the admin's have no unit).
                WebhookSubscription.api_key_id.is_(None)
                & WebhookSubscription.unit_id.is_not(None)
                & (Channel.unit_id == caller.unit_id),
            )
        )
    return query


@router.get("/webhooks", response_model=Page[WebhookOut], tags=["webhooks"])
def list_webhooks(
    request: Request, session: ReadSession, caller: Caller, limit: Limit = 50, cursor: Cursor = None
) -> Page[WebhookOut]:
    """The outbound subscriptions this key made (the admin: all of them); secrets never shown."""
    query = _own_webhooks(caller).where(WebhookSubscription.id > decode_cursor(cursor))
    rows = list(session.exec(query.order_by(WebhookSubscription.id).limit(limit + 1)))
    return page_of(rows, limit, lambda sub: webhook_out(session, sub, request))


@router.delete(
    "/webhooks/{webhook_id}",
    status_code=204,
    tags=["webhooks"],
    responses={404: ERROR_RESPONSES[404]},
)
def delete_webhook(webhook_id: RowId, session: WriteSession, caller: Caller) -> Response:
    """Unsubscribe: nothing more is sent to it, deliveries not yet made included (a secret
    is rotated by subscribing with the new one, then removing the old subscription)."""
    require_scope(caller, "write")
    sub = session.exec(_own_webhooks(caller).where(WebhookSubscription.id == webhook_id)).first()
    if sub is None:
        raise Problem(404, f"There is no webhook subscription {webhook_id} that this key made.")
    channel = session.get(Channel, sub.channel_id) if sub.channel_id else None
    if channel is not None:
        channel.enabled = False  # kept for the outbox's history; never a unit's own channel
    session.delete(sub)
    session.flush()
    return Response(status_code=204)


def _carries_subscription(session: Session, channel: Channel) -> bool:
    query = select(WebhookSubscription.id).where(WebhookSubscription.channel_id == channel.id)
    return session.exec(query).first() is not None
