"""单位: the unit tree."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlmodel import Session, select

from service.api.common import (
    ERROR_RESPONSES,
    Cursor,
    Limit,
    Page,
    Strict,
    decode_cursor,
    forget_cached_keys,
    local_iso,
    page_of,
    unit_by_code,
    visible_unit_or_404,
)
from service.auth import Principal, require_administers, require_scope
from service.deps import Caller, ReadSession, UnitOfWorkRoute, WriteSession
from service.idempotency import idempotent
from service.models import Unit
from service.problems import Problem

router = APIRouter(
    prefix="/api/v1/units", tags=["units"], responses=ERROR_RESPONSES, route_class=UnitOfWorkRoute
)

Level = Literal["township", "county", "city", "province"]
Kind = Literal["government", "department", "taskforce", "leader", "enterprise"]
LEVEL_RANK = {"township": 0, "county": 1, "city": 2, "province": 3}


class UnitCreate(Strict):
    code: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$", examples=["xx-fgw"]
    )
    name: str = Field(min_length=1, max_length=200, examples=["新乡市发展和改革委员会"])
    level: Level
    kind: Kind
    parent: str | None = Field(
        None, max_length=64, description="Parent unit code, or null for a root"
    )
    tags: list[str] | None = Field(
        default_factory=list,
        max_length=20,
        description="Ladder tags: general_taskforce, executive_vice_mayor, sector:<category> …",
        examples=[["general_taskforce"]],
    )


class UnitUpdate(Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    tags: list[str] | None = Field(
        None,
        max_length=20,
        description="The unit's ladder tags, all of them (replacing the old); null or [] "
        "removes them",
        examples=[["sector:用地", "oversees:xx-zrj"]],
    )


class UnitOut(BaseModel):
    id: int
    code: str
    name: str
    level: str
    kind: str
    parent: str | None
    tags: list[str]
    created_at: str | None


def unit_out(session: Session, unit: Unit, request: Request) -> UnitOut:
    parent = session.get(Unit, unit.parent_id) if unit.parent_id else None
    return UnitOut(
        id=unit.id,
        code=unit.code,
        name=unit.name,
        level=unit.level,
        kind=unit.kind,
        parent=parent.code if parent else None,
        tags=list(unit.tags),
        created_at=local_iso(unit.created_at, request.app.state.settings.tz),
    )


@router.post("", status_code=201, response_model=UnitOut, responses={409: ERROR_RESPONSES[409]})
def create_unit(body: UnitCreate, request: Request, session: WriteSession, caller: Caller):
    """Create a unit (单位) under a parent; admin scope."""
    require_scope(caller, "admin")

    def create() -> tuple[int, UnitOut]:
        _check_tags(caller, body.tags)
        if session.exec(select(Unit.id).where(Unit.code == body.code)).first() is not None:
            raise Problem(
                409, f"code: a unit with code '{body.code}' already exists.", field="code"
            )
        parent = unit_by_code(session, body.parent, "parent") if body.parent else None
        if parent is not None:
            require_administers(caller, parent)
        elif not caller.is_admin:
            raise Problem(
                403, "parent: only the bootstrap admin key creates a unit without a parent."
            )
        if parent is not None and LEVEL_RANK[body.level] > LEVEL_RANK[parent.level]:
            raise Problem(
                422,
                f"level: a {body.level}-level unit cannot sit under the {parent.level}-level "
                f"unit '{parent.code}'.",
                field="level",
            )
        unit = Unit(
            code=body.code,
            name=body.name,
            level=body.level,
            kind=body.kind,
            parent_id=parent.id if parent else None,
            tags=body.tags,
            created_at=request.app.state.ctx.clock.now(),
        )
        session.add(unit)
        session.flush()
        unit.path = f"{parent.path if parent else '/'}{unit.id}/"
        session.flush()
        return 201, unit_out(session, unit, request)

    return idempotent(request, session, caller, body, create)


@router.get("", response_model=Page[UnitOut])
def list_units(
    request: Request, session: ReadSession, caller: Caller, limit: Limit = 50, cursor: Cursor = None
) -> Page[UnitOut]:
    """Units this key can see, in creation order."""
    after = decode_cursor(cursor)
    query = select(Unit).where(Unit.id > after).order_by(Unit.id).limit(limit + 1)
    if not caller.is_admin:
        query = query.where(Unit.path.startswith(caller.scope_path or "//"))
    rows = list(session.exec(query))
    return page_of(rows, limit, lambda u: unit_out(session, u, request))


@router.get("/{code}", response_model=UnitOut)
def get_unit(code: str, request: Request, session: ReadSession, caller: Caller) -> UnitOut:
    return unit_out(session, visible_unit_or_404(session, caller, code), request)


def _check_tags(caller: Principal, tags: list[str] | None, changing: bool = False) -> None:
    """Tags decide who receives escalations (the ladder): only the bootstrap admin or the
    city's own admin key sets them, or a county could take the city's queue for itself."""
    if any(not tag or len(tag) > 64 for tag in tags or []):
        raise Problem(422, "tags: each tag has 1 to 64 characters.", field="tags")
    if (tags or changing) and not caller.administers_everything:
        raise Problem(
            403,
            "tags: the ladder's tags are set by the bootstrap admin key or a key with the "
            "'admin' scope of the city itself (its root unit).",
            field="tags",
        )


@router.patch("/{code}", response_model=UnitOut)
def update_unit(
    code: str, body: UnitUpdate, request: Request, session: WriteSession, caller: Caller
) -> UnitOut:
    """Rename a unit (机构改革) or change its ladder tags; admin scope. Its code, level,
    kind and place in the tree stay. The ladder reads the tags at each escalation, so a
    change applies to the next one; escalations already made keep their receivers."""
    require_scope(caller, "admin")
    unit = session.exec(select(Unit).where(Unit.code == code)).first()
    if unit is None or not caller.administers(unit.path):
        raise Problem(404, f"There is no unit with code '{code}' that this key can see.")
    given = body.model_fields_set
    if not given:
        raise Problem(422, "Give at least one of name, tags.")
    if "name" in given:
        if body.name is None:
            raise Problem(422, "name: a unit always has a name; give one.", field="name")
        unit.name = body.name
    if "tags" in given:
        _check_tags(caller, body.tags, changing=True)
        unit.tags = list(body.tags or [])
    session.add(unit)
    session.flush()
    forget_cached_keys(session, request)  # keys cache their unit's tags and name
    return unit_out(session, unit, request)
