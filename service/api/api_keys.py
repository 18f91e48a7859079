"""API keys: admins create keys bound to a unit with scopes; the secret is shown once."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlmodel import Session

from service.api.common import ERROR_RESPONSES, Strict, local_iso, unit_by_code
from service.auth import hash_key, new_key, require_scope
from service.deps import Caller, UnitOfWorkRoute, WriteSession
from service.idempotency import idempotent
from service.models import ApiKey, Officer
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
    officer_id: int | None = None
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
