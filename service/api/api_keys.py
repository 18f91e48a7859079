"""API keys: admins create keys bound to a unit with scopes; the secret is shown once.
Admins list keys (never their secrets) and revoke one: it stops working at once in this
process, and within `DUBAN_AUTH_CACHE_S` in every other."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import event
from sqlmodel import Session, select

from service.api.common import (
    ERROR_RESPONSES,
    BodyId,
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
from service.auth import hash_key, new_key, require_scope
from service.deps import Caller, ReadSession, UnitOfWorkRoute, WriteSession
from service.idempotency import idempotent
from service.models import ApiKey, Officer, Unit
from service.problems import Problem

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


class ApiKeyInfo(BaseModel):
    id: int
    name: str
    unit: str
    officer_id: int | None
    scopes: list[str]
    prefix: str = Field(description="The secret's first characters, to tell keys apart")
    created_at: str | None
    revoked_at: str | None = Field(description="When it was revoked; null while it works")


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
    )


@router.get("", response_model=Page[ApiKeyInfo])
def list_api_keys(
    request: Request, session: ReadSession, caller: Caller, limit: Limit = 50, cursor: Cursor = None
) -> Page[ApiKeyInfo]:
    """Every API key, oldest first, without its secret; admin scope."""
    require_scope(caller, "admin")
    query = select(ApiKey).where(ApiKey.id > decode_cursor(cursor)).order_by(ApiKey.id)
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
    require_scope(caller, "admin")
    key = session.get(ApiKey, key_id)
    if key is None:
        raise Problem(404, f"There is no API key {key_id}.")
    if key.revoked_at is None:
        key.revoked_at = request.app.state.ctx.clock.now()
        session.flush()
        # Forget cached keys once the revocation is committed: a lookup in between would
        # read the key still valid and cache it again.
        principals = request.app.state.principals
        event.listen(session, "after_commit", lambda _s: principals.forget_all(), once=True)
    return key_info(session, key, request)


@router.post("", status_code=201, response_model=ApiKeyOut)
def create_api_key(
    body: ApiKeyCreate, request: Request, session: WriteSession, caller: Caller
) -> ApiKeyOut:
    """Create an API key; admin scope. Store the returned `key`: it is not shown again,
    except to a retry with the same Idempotency-Key and body from the same credential."""
    require_scope(caller, "admin")
    return idempotent(
        request, session, caller, body, lambda: (201, _create(body, request, session)), ("key",)
    )


def _create(body: ApiKeyCreate, request: Request, session: Session) -> ApiKeyOut:
    unit = unit_by_code(session, body.unit)
    if body.officer_id is not None:
        officer = session.get(Officer, body.officer_id)
        if officer is None or officer.unit_id != unit.id:
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
