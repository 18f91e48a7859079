"""API keys: admins create keys bound to a unit with scopes; the secret is shown once.
Admins list keys (never their secrets) and revoke one: it stops working at once in this
process, and within `DUBAN_AUTH_CACHE_S` in every other."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlmodel import Session, select

from service.api.common import (
    A_NUMBER,
    ERROR_RESPONSES,
    BodyId,
    Cursor,
    Limit,
    Page,
    RowId,
    Strict,
    decode_cursor,
    forget_cached_keys,
    local_iso,
    page_of,
    unit_by_code,
)
from service.api.officers import active_officer
from service.auth import Principal, hash_key, new_key, require_administers, require_scope
from service.deps import Caller, ReadSession, UnitOfWorkRoute, WriteSession
from service.idempotency import idempotent
from service.models import ApiKey, Unit
from service.models.types import utcnow
from service.problems import Problem

MAX_OVERLAP_S = 7 * 86_400  # a week to switch over at most

router = APIRouter(
    prefix="/api/v1/api-keys",
    tags=["api-keys"],
    responses=ERROR_RESPONSES,
    route_class=UnitOfWorkRoute,
)


class ApiKeyCreate(Strict):
    name: str = Field(min_length=1, max_length=200, examples=["省挂图作战系统"])
    unit: str = Field(min_length=1, max_length=64)
    officer_id: BodyId | None = None
    scopes: list[Literal["read", "write", "admin"]] = Field(
        min_length=1, examples=[["read", "write"]]
    )


class ApiKeyOut(BaseModel):
    id: int
    name: str
    unit: str
    officer_id: int | None
    scopes: list[str]
    prefix: str
    created_at: str | None
    key: str = Field(description="The secret; shown only in this answer")
    previous_until: str | None = Field(
        default=None, description="After a rotation: until when the old secret still works"
    )


class ApiKeyInfo(BaseModel):
    id: int
    name: str
    unit: str
    officer_id: int | None
    scopes: list[str]
    prefix: str = Field(description="The secret's first characters, to tell keys apart")
    created_at: str | None
    revoked_at: str | None = Field(description="When it was revoked; null while it works")
    previous_until: str | None = Field(
        default=None, description="Until when the secret before the last rotation still works"
    )


def key_info(session: Session, key: ApiKey, request: Request) -> ApiKeyInfo:
    tz = request.app.state.settings.tz
    unit = session.get(Unit, key.unit_id)
    return ApiKeyInfo(
        id=key.id,
        name=key.name,
        unit=unit.code if unit else "",
        officer_id=key.officer_id,
        scopes=list(key.scopes),
        prefix=key.prefix,
        created_at=local_iso(key.created_at, tz),
        revoked_at=local_iso(key.revoked_at, tz),
        previous_until=(
            local_iso(key.previous_until, tz) if key.previous_hash and not key.revoked_at else None
        ),
    )


@router.get("", response_model=Page[ApiKeyInfo])
def list_api_keys(
    request: Request, session: ReadSession, caller: Caller, limit: Limit = 50, cursor: Cursor = None
) -> Page[ApiKeyInfo]:
    """The API keys of the units this key administers (the bootstrap admin: all), oldest
    first, without their secrets; admin scope."""
    require_scope(caller, "admin")
    query = select(ApiKey).where(ApiKey.id > decode_cursor(cursor)).order_by(ApiKey.id)
    if not caller.is_admin:
        query = query.join(Unit, Unit.id == ApiKey.unit_id).where(
            Unit.path.startswith(caller.scope_path or "//")
        )
    rows = list(session.exec(query.limit(limit + 1)))
    return page_of(rows, limit, lambda k: key_info(session, k, request))


@router.post("/{key_id}/revoke", response_model=ApiKeyInfo)
def revoke_api_key(
    key_id: RowId, request: Request, session: WriteSession, caller: Caller
) -> ApiKeyInfo:
    """Revoke a key for good (a lost laptop, an officer who left); admin scope. Requests
    with it answer 401 from now on in this process, and within `DUBAN_AUTH_CACHE_S`
    seconds in every other; the webhook subscriptions it made receive no later event.
    Revoking a revoked key changes nothing."""
    key = _administered_key(session, caller, key_id)
    if key.revoked_at is None:
        key.revoked_at = request.app.state.ctx.clock.now()
        session.flush()
        forget_cached_keys(session, request)
    return key_info(session, key, request)


class ApiKeyRotate(Strict):
    overlap_s: Annotated[int, A_NUMBER] = Field(
        default=0,
        ge=0,
        le=MAX_OVERLAP_S,
        description="Seconds the old secret keeps working beside the new one (real time), so "
        "the system can switch without a gap; 0, the default, ends it at once",
        examples=[3600],
    )


@router.post("/{key_id}/rotate", response_model=ApiKeyOut)
def rotate_api_key(
    key_id: RowId, request: Request, session: WriteSession, caller: Caller,
    body: ApiKeyRotate | None = None,
) -> ApiKeyOut:  # fmt: skip
    """Give a key a new secret, shown once in `key`; admin scope. The key keeps its id,
    unit, scopes and officer, and so the blockers it reported (it may still close them),
    its `external_ref`s and its webhook subscriptions. The old secret works for
    `overlap_s` more seconds (then, like a revoked key, within `DUBAN_AUTH_CACHE_S` in the
    other processes). A revoked key cannot be rotated. Rotating again ends the older
    secret at once: if an answer was lost, rotate again and use the newest."""
    key = _administered_key(session, caller, key_id)
    if key.revoked_at is not None:
        raise Problem(409, f"API key {key_id} is revoked; create a new key instead.")
    overlap = (body or ApiKeyRotate()).overlap_s
    secret = new_key()
    key.previous_hash = key.key_hash if overlap else None
    key.previous_until = utcnow() + timedelta(seconds=overlap) if overlap else None
    key.key_hash = hash_key(secret)
    key.prefix = secret[:10]
    session.flush()
    forget_cached_keys(session, request)
    return ApiKeyOut(
        **key_info(session, key, request).model_dump(exclude={"revoked_at"}), key=secret
    )


@router.post("", status_code=201, response_model=ApiKeyOut)
def create_api_key(
    body: ApiKeyCreate, request: Request, session: WriteSession, caller: Caller
) -> ApiKeyOut:
    """Create an API key; admin scope. Store the returned `key`: it is not shown again,
    except to a retry with the same Idempotency-Key and body from the same credential."""
    require_scope(caller, "admin")
    return idempotent(
        request,
        session,
        caller,
        body,
        lambda: (201, _create(body, request, session, caller)),
        ("key",),
    )


def _create(body: ApiKeyCreate, request: Request, session: Session, caller: Principal) -> ApiKeyOut:
    unit = unit_by_code(session, body.unit)
    require_administers(caller, unit)
    if body.officer_id is not None:
        officer = active_officer(session, body.officer_id, "officer_id")
        if officer.unit_id != unit.id:
            raise Problem(
                422,
                f"officer_id: officer {body.officer_id} is not an officer of unit '{unit.code}'.",
                field="officer_id",
            )
    secret = new_key()
    key = ApiKey(
        name=body.name,
        unit_id=unit.id,
        officer_id=body.officer_id,
        scopes=sorted(set(body.scopes)),
        prefix=secret[:10],
        key_hash=hash_key(secret),
        created_at=request.app.state.ctx.clock.now(),
    )
    session.add(key)
    session.flush()
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        unit=unit.code,
        officer_id=key.officer_id,
        scopes=key.scopes,
        prefix=key.prefix,
        created_at=local_iso(key.created_at, request.app.state.settings.tz),
        key=secret,
    )


def _administered_key(session: Session, caller: Principal, key_id: int) -> ApiKey:
    """The key `key_id` of a unit `caller` administers; 404 for any other (403 without the
    admin scope)."""
    require_scope(caller, "admin")
    key = session.get(ApiKey, key_id)
    unit = session.get(Unit, key.unit_id) if key is not None else None
    if key is None or unit is None or not caller.administers(unit.path):
        raise Problem(404, f"There is no API key {key_id} that this key administers.")
    return key
