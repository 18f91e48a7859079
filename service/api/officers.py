"""责任人: officers of units."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, StrictBool
from sqlalchemy import update
from sqlmodel import Session, select

from service.api.common import (
    ERROR_RESPONSES,
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
from service.auth import require_administers, require_scope
from service.deps import Caller, ReadSession, UnitOfWorkRoute, WriteSession
from service.idempotency import idempotent
from service.models import ApiKey, Officer, Unit
from service.problems import Problem

router = APIRouter(
    prefix="/api/v1/officers",
    tags=["officers"],
    responses=ERROR_RESPONSES,
    route_class=UnitOfWorkRoute,
)


MOBILE = r"^\+?[0-9]{6,15}$"
Role = Literal["lead", "liaison", "leader", "staff"]


class OfficerCreate(Strict):
    name: str = Field(min_length=1, max_length=100, examples=["王建国"])
    mobile: str = Field(pattern=MOBILE, examples=["13800000001"])
    unit: str = Field(min_length=1, max_length=64, examples=["xx-fgw"])
    role: Role
    wecom_userid: str | None = Field(None, max_length=64)
    dingtalk_userid: str | None = Field(None, max_length=64)


class OfficerUpdate(Strict):
    name: str | None = Field(None, min_length=1, max_length=100)
    mobile: str | None = Field(None, pattern=MOBILE, examples=["13900000002"])
    role: Role | None = None
    wecom_userid: str | None = Field(None, max_length=64, description="null removes it")
    dingtalk_userid: str | None = Field(None, max_length=64, description="null removes it")
    active: StrictBool | None = Field(
        None,
        description="false: the officer has left the post: no longer @-ed in chat groups, "
        "assigned blockers or bound to new API keys; true: back",
    )


class OfficerOut(BaseModel):
    id: int
    name: str
    mobile: str
    unit: str
    role: str
    wecom_userid: str | None
    dingtalk_userid: str | None
    active: bool
    created_at: str | None


def officer_out(session: Session, officer: Officer, request: Request) -> OfficerOut:
    unit = session.get(Unit, officer.unit_id)
    return OfficerOut(
        id=officer.id,
        name=officer.name,
        mobile=officer.mobile,
        unit=unit.code if unit else "",
        role=officer.role,
        wecom_userid=officer.wecom_userid,
        dingtalk_userid=officer.dingtalk_userid,
        active=officer.active,
        created_at=local_iso(officer.created_at, request.app.state.settings.tz),
    )


@router.post("", status_code=201, response_model=OfficerOut)
def create_officer(body: OfficerCreate, request: Request, session: WriteSession, caller: Caller):
    """Register an officer (责任人) of a unit; admin scope."""
    require_scope(caller, "admin")

    def create() -> tuple[int, OfficerOut]:
        unit = unit_by_code(session, body.unit)
        require_administers(caller, unit)
        officer = Officer(
            **body.model_dump(exclude={"unit"}),
            unit_id=unit.id,
            created_at=request.app.state.ctx.clock.now(),
        )
        session.add(officer)
        session.flush()
        return 201, officer_out(session, officer, request)

    return idempotent(request, session, caller, body, create)


@router.get("", response_model=Page[OfficerOut])
def list_officers(
    request: Request,
    session: ReadSession,
    caller: Caller,
    unit: str | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[OfficerOut]:
    after = decode_cursor(cursor)
    query = (
        select(Officer)
        .join(Unit, Unit.id == Officer.unit_id)
        .where(Officer.id > after)
        .order_by(Officer.id)
        .limit(limit + 1)
    )
    if not caller.is_admin:
        query = query.where(Unit.path.startswith(caller.scope_path or "//"))
    if unit:
        query = query.where(Unit.code == unit)
    rows = list(session.exec(query))
    return page_of(rows, limit, lambda o: officer_out(session, o, request))


@router.get("/{officer_id}", response_model=OfficerOut)
def get_officer(
    officer_id: RowId, request: Request, session: ReadSession, caller: Caller
) -> OfficerOut:
    officer = session.get(Officer, officer_id)
    unit = session.get(Unit, officer.unit_id) if officer else None
    if officer is None or unit is None or not caller.sees_path(unit.path):
        raise Problem(404, f"There is no officer {officer_id} that this key can see.")
    return officer_out(session, officer, request)


@router.patch("/{officer_id}", response_model=OfficerOut)
def update_officer(
    officer_id: RowId, body: OfficerUpdate, request: Request, session: WriteSession, caller: Caller
) -> OfficerOut:
    """Correct an officer (a new mobile, a new role) or mark one who left the post
    `"active": false`; admin scope. The officer stays in the timelines that name them; the
    blockers assigned to them @ their unit's leads until they are reassigned; the API keys
    bound to them are revoked (within `DUBAN_AUTH_CACHE_S` in other processes)."""
    require_scope(caller, "admin")
    officer = session.get(Officer, officer_id)
    unit = session.get(Unit, officer.unit_id) if officer else None
    if officer is None or unit is None or not caller.administers(unit.path):
        raise Problem(404, f"There is no officer {officer_id} that this key can see.")
    given = body.model_fields_set
    if not given:
        raise Problem(422, f"Give at least one of {', '.join(OfficerUpdate.model_fields)}.")
    leaving = officer.active and body.active is False
    for name in given:
        value = getattr(body, name)
        if value is None and name in ("name", "mobile", "role", "active"):
            raise Problem(422, f"{name}: an officer always has one; give a value.", field=name)
        setattr(officer, name, value)
    session.add(officer)
    if leaving:
        session.execute(
            update(ApiKey)
            .where(ApiKey.officer_id == officer.id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=request.app.state.ctx.clock.now())
        )
        forget_cached_keys(session, request)
    session.flush()
    return officer_out(session, officer, request)


def active_officer(session: Session, officer_id: int, field: str) -> Officer:
    """The officer `officer_id` for a new assignment, key or project; 422 if unknown or gone."""
    officer = session.get(Officer, officer_id)
    if officer is None:
        raise Problem(422, f"{field}: there is no officer {officer_id}.", field=field)
    if not officer.active:
        raise Problem(
            422,
            f"{field}: officer {officer_id} ({officer.name}) has left the post (inactive); "
            "choose another officer.",
            field=field,
        )
    return officer
