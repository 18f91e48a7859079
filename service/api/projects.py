"""项目: projects, with their progress light and open blockers."""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import ColumnElement, or_
from sqlmodel import Session, select

from service.api.blocker_views import blocker_out, units_in_scope, visibility_clause
from service.api.common import (
    ERROR_RESPONSES,
    BodyId,
    Cursor,
    Limit,
    Page,
    Strict,
    decode_cursor,
    local_iso,
    page_of,
    unit_by_code,
)
from service.api.officers import active_officer
from service.auth import Principal, require_scope
from service.deps import Caller, ReadSession, UnitOfWorkRoute, WriteSession
from service.idempotency import idempotent
from service.models import Blocker, Project, Unit
from service.models.blocker import CLOSED_STATES, OVERDUE_STATES, is_overdue
from service.problems import Problem

router = APIRouter(
    prefix="/api/v1/projects",
    tags=["projects"],
    responses=ERROR_RESPONSES,
    route_class=UnitOfWorkRoute,
)


class ProjectCreate(Strict):
    code: str = Field(min_length=1, max_length=64, examples=["2401-410700-04-01-123456"])
    name: str = Field(min_length=1, max_length=300, examples=["新乡市某新能源装备制造项目"])
    category: str = Field(min_length=1, max_length=64, examples=["省市重点"])
    county: str = Field(min_length=1, max_length=64, description="Unit code of the county/district")
    enterprise: str | None = Field(None, max_length=300, examples=["某某新能源有限公司"])
    leader_officer_id: BodyId | None = None
    total_investment: Decimal | None = Field(
        None,
        ge=0,
        le=Decimal("99999999999999"),
        max_digits=16,
        decimal_places=2,
        description="万元",
    )

    @field_validator("code")
    @classmethod
    def _fits_a_path(cls, code: str) -> str:
        if code in (".", "..") or any(c in "/\\?#%" or c.isspace() for c in code):
            raise ValueError(
                "may not contain '/', '\\', '?', '#', '%' or spaces, nor be '.' or '..': "
                "it is part of the project's URL"
            )
        return code


class ProjectOut(BaseModel):
    id: int
    code: str
    name: str
    category: str
    county: str
    enterprise: str | None
    leader_officer_id: int | None
    total_investment: float | None
    light: str
    open_blockers: int
    overdue_blockers: int
    created_at: str | None


AT_RISK_WORKING_DAYS = 3  # the first deadline reminder's horizon
LIGHTS = ("green", "yellow", "red")


class Lights:
    """红黄绿灯 (seed 001) from a project's open blockers: red when one is overdue; yellow
    when one is at risk — due within 3 working days, or escalated above the level its
    authority starts it at (not acknowledged, stuck, asked for help); else green."""

    def __init__(self, request: Request, session: Session) -> None:
        ctx = request.app.state.ctx
        self.now, self.workflows = ctx.clock.now(), ctx.workflows
        self.cal = ctx.calendars.get(session)
        self.today = self.cal.local_date(self.now)

    def of(self, blocker: Blocker) -> int:
        """0 green, 1 yellow, 2 red."""
        if is_overdue(blocker, self.now):
            return 2
        workflow = self.workflows.get(blocker.workflow)
        top = workflow.definition.top_level if workflow else 3
        start = {"city": 1, "province": top}.get(blocker.authority_level, 0)
        if blocker.escalation_level > start:
            return 1
        if blocker.state in OVERDUE_STATES and blocker.deadline is not None:
            left = self.cal.working_days_between(self.today, blocker.deadline)
            return int(left <= AT_RISK_WORKING_DAYS)
        return 0


def project_out(
    session: Session, project: Project, request: Request, lights: Lights | None = None
) -> ProjectOut:
    """`lights`: one for a whole page of projects (it holds the calendar and the time)."""
    county = session.get(Unit, project.county_unit_id)
    lights = lights or Lights(request, session)
    open_blockers = list(
        session.exec(
            select(Blocker).where(
                Blocker.project_id == project.id, Blocker.state.not_in(CLOSED_STATES)
            )
        )
    )
    signals = [lights.of(b) for b in open_blockers]
    return ProjectOut(
        id=project.id,
        code=project.code,
        name=project.name,
        category=project.category,
        county=county.code if county else "",
        enterprise=project.enterprise,
        leader_officer_id=project.leader_officer_id,
        total_investment=float(project.total_investment)
        if project.total_investment is not None
        else None,
        light=LIGHTS[max(signals, default=0)],
        open_blockers=len(open_blockers),
        overdue_blockers=sum(is_overdue(b, lights.now) for b in open_blockers),
        created_at=local_iso(project.created_at, request.app.state.settings.tz),
    )


def visible_projects(caller: Principal) -> ColumnElement[bool] | None:
    """SQL condition for the projects a key sees: those of its counties, and those holding a
    blocker it sees (a city department's, an escalated one). None means all (admin)."""
    clause = visibility_clause(caller)
    if clause is None:
        return None
    return or_(
        Project.county_unit_id.in_(units_in_scope(caller)),
        Project.id.in_(select(Blocker.project_id).where(clause)),
    )


def visible_project_or_404(session: Session, caller: Principal, code: str) -> Project:
    query = select(Project).where(Project.code == code)
    clause = visible_projects(caller)
    if clause is not None:
        query = query.where(clause)
    project = session.exec(query).first()
    if project is None:
        raise Problem(404, f"There is no project '{code}' that this key can see.")
    return project


@router.post("", status_code=201, response_model=ProjectOut)
def create_project(body: ProjectCreate, request: Request, session: WriteSession, caller: Caller):
    """Register a project (项目); write scope within the county's jurisdiction."""
    require_scope(caller, "write")

    def create() -> tuple[int, ProjectOut]:
        county = unit_by_code(session, body.county, "county")
        if not caller.sees_path(county.path):
            raise Problem(
                403, f"county: '{body.county}' is outside this key's jurisdiction.", field="county"
            )
        if session.exec(select(Project.id).where(Project.code == body.code)).first() is not None:
            raise Problem(
                409, f"code: a project with code '{body.code}' already exists.", field="code"
            )
        if body.leader_officer_id is not None:
            active_officer(session, body.leader_officer_id, "leader_officer_id")
        project = Project(
            **body.model_dump(exclude={"county"}),
            county_unit_id=county.id,
            created_at=request.app.state.ctx.clock.now(),
        )
        session.add(project)
        session.flush()
        return 201, project_out(session, project, request)

    return idempotent(request, session, caller, body, create)


@router.get("", response_model=Page[ProjectOut])
def list_projects(
    request: Request, session: ReadSession, caller: Caller, limit: Limit = 50, cursor: Cursor = None
) -> Page[ProjectOut]:
    after = decode_cursor(cursor)
    query = select(Project).where(Project.id > after).order_by(Project.id).limit(limit + 1)
    clause = visible_projects(caller)
    if clause is not None:
        query = query.where(clause)
    rows = list(session.exec(query))
    lights = Lights(request, session)
    return page_of(rows, limit, lambda p: project_out(session, p, request, lights))


@router.get("/{code}")
def get_project(code: str, request: Request, session: ReadSession, caller: Caller) -> dict:
    """A project with its light and the open blockers this key sees (the light counts all)."""
    project = visible_project_or_404(session, caller, code)
    out = project_out(session, project, request).model_dump()
    query = (
        select(Blocker)
        .where(Blocker.project_id == project.id, Blocker.state.not_in(CLOSED_STATES))
        .order_by(Blocker.id)
        .limit(500)
    )
    clause = visibility_clause(caller)
    rows = session.exec(query if clause is None else query.where(clause))
    out["blockers"] = [blocker_out(session, b, request, caller).model_dump() for b in rows]
    return out
