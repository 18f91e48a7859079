"""通报、考评: per-unit rates and ranking, per-project lights."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlmodel import select

from service.api.blocker_views import visibility_clause
from service.api.common import (
    ERROR_RESPONSES,
    Cursor,
    Limit,
    Page,
    decode_cursor,
    encode_cursor,
)
from service.api.projects import LIGHTS, Lights, visible_projects
from service.deps import Caller, ReadSession, UnitOfWorkRoute
from service.models import Blocker, Project, Unit
from service.models.blocker import CLOSED_STATES, is_overdue
from service.problems import Problem
from workflows.ranking import unit_ranking

router = APIRouter(
    prefix="/api/v1/reports",
    tags=["reports"],
    responses=ERROR_RESPONSES,
    route_class=UnitOfWorkRoute,
)


class UnitReport(BaseModel):
    """One responsible unit over [from, to]. Counts are of blockers, not of events."""

    unit: str
    name: str
    level: str
    assigned: int = Field(description="Blockers assigned to the unit in the period")
    acknowledged_on_time: int = Field(
        description="Of those, acknowledged before the acknowledge-by time was missed"
    )
    awaiting_acknowledgement: int = Field(
        description="Of those, not acknowledged yet with the acknowledge-by time still ahead "
        "(a blocker withdrawn before either is neither awaiting nor counted in 响应率)"
    )
    resolved: int = Field(description="Blockers the unit reported resolved in the period")
    resolved_on_time: int = Field(
        description="Blockers that came due in the period (reported resolved, or overdue at "
        "some time in it) and were reported resolved without passing their deadline"
    )
    overdue: int = Field(
        description="Blockers overdue at some time in the period: they passed their deadline "
        "in it, or before it and were still unresolved when it began"
    )
    returned: int = Field(description="Verifications in the period not satisfied (退回重办)")
    verified_satisfied: int
    verifications: int = Field(description="Verifications (回访) in the period")
    response_rate: float | None = Field(
        description="响应率: acknowledged_on_time / (assigned − awaiting_acknowledgement)"
    )
    on_time_rate: float | None = Field(
        description="按期办结率: resolved_on_time / blockers that came due in the period "
        "(reported resolved, or overdue at some time in it)"
    )
    satisfaction_rate: float | None = Field(
        description="满意率: verified_satisfied / verifications"
    )
    average_days_to_close: float | None = Field(
        description="Calendar days from first assignment to closing, of blockers closed in "
        "the period"
    )
    open_blockers: int = Field(description="The unit's open blockers now")
    rank: int | None = Field(
        description="The unit's place in the city's ranking (whichever key asks); 1 is best; units equal on every criterion share a place (1, 2, 2, 4); "
        "null for a unit with neither rate (nothing came due and nothing was assigned to it "
        "in the period: nothing to rank it by)"
    )


def _page(rows: list, limit: int, cursor: str | None) -> Page:
    """A page of a report computed whole (a ranking is only known in full): the cursor
    counts the rows already handed out."""
    start = decode_cursor(cursor)
    end = start + limit
    return Page(items=rows[start:end], next_cursor=encode_cursor(end) if len(rows) > end else None)


class Period:
    """The days a unit report covers, and the level of the units it ranks."""

    def __init__(
        self,
        from_: Annotated[date, Query(alias="from", description="First day, YYYY-MM-DD")],
        to: Annotated[date, Query(description="Last day, YYYY-MM-DD")],
        level: Literal["township", "county", "city", "province"] | None = None,
    ) -> None:
        self.from_, self.to, self.level = from_, to, level


@router.get("/units", response_model=Page[UnitReport])
def unit_report(
    request: Request,
    session: ReadSession,
    caller: Caller,
    period: Annotated[Period, Depends()],
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[UnitReport]:
    """通报排名: rates per responsible unit over [from, to] (local days), ranked by on-time
    rate, then response rate, fewest overdue, satisfaction, fewest days to close; a rate
    with nothing to count (null) missed nothing and ranks as full. Units tied on all of
    them share a place, listed by unit code. Units with open blockers are listed even when
    nothing happened to them in the period (with neither rate, they come last, unranked)."""
    rows = _unit_rows(request, session, caller, period)
    return _page([UnitReport(**row) for row in rows], limit, cursor)


def _unit_rows(request: Request, session, caller, period: Period):
    """The rows of the unit report for [from, to] that `caller` is shown."""
    from_, to, level = period.from_, period.to, period.level
    for name, day in (("from", from_), ("to", to)):
        if not 2000 <= day.year <= 2100:
            raise Problem(422, f"{name}: give a date between 2000 and 2100.", field=name)
    if to < from_:
        raise Problem(422, "to: must not be before from.", field="to")
    if (to - from_).days > 3700:
        raise Problem(422, "to: a report covers at most ten years.", field="to")
    tz = request.app.state.settings.tz
    start = datetime.combine(from_, time.min, tz)
    end = datetime.combine(to + timedelta(days=1), time.min, tz)
    # The city's ranking, as the monthly briefing publishes it; a key is shown the rows of
    # its own units and of those whose blockers it sees, with their places in the city.
    rows = unit_ranking(session, start, end, None, level)
    clause = visibility_clause(caller)
    if clause is not None:
        seen = set(session.exec(select(Blocker.unit_id).where(clause).distinct()).all())
        rows = [r for r in rows if r["unit_id"] in seen or caller.sees_path(r["path"])]
    return rows


CSV_COLUMNS = [  # (header, field): what an official's spreadsheet calls each column
    ("排名", "rank"),
    ("单位代码", "unit"),
    ("单位名称", "name"),
    ("层级", "level"),
    ("交办件数", "assigned"),
    ("按时签收件数", "acknowledged_on_time"),
    ("待签收件数", "awaiting_acknowledgement"),
    ("申请办结件数", "resolved"),
    ("按期办结件数", "resolved_on_time"),
    ("逾期件数", "overdue"),
    ("退回重办次数", "returned"),
    ("核验满意次数", "verified_satisfied"),
    ("核验次数", "verifications"),
    ("响应率", "response_rate"),
    ("按期办结率", "on_time_rate"),
    ("满意率", "satisfaction_rate"),
    ("平均办结天数", "average_days_to_close"),
    ("当前在办件数", "open_blockers"),
]
LEVELS = {"township": "乡镇（街道）", "county": "县（市、区）", "city": "市级", "province": "省级"}


def _cell(field: str, value) -> str:
    if value is None:
        return ""
    if field.endswith("_rate"):
        return f"{value * 100:.1f}%"
    text = LEVELS.get(value, value) if field == "level" else str(value)
    # A cell Excel would run as a formula (=, +, -, @) is kept as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


@router.get(
    "/units/export",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "The report as a CSV file"}},
)
def unit_report_export(
    request: Request,
    session: ReadSession,
    caller: Caller,
    period: Annotated[Period, Depends()],
) -> Response:
    """The unit report as a spreadsheet (CSV, UTF-8 with BOM, so Excel reads the Chinese
    headers): the same rows, all of them, in ranking order."""
    rows = _unit_rows(request, session, caller, period)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([header for header, _ in CSV_COLUMNS])
    for row in rows:
        writer.writerow([_cell(field, row[field]) for _, field in CSV_COLUMNS])
    name = f"督办排名_{period.from_.isoformat()}_{period.to.isoformat()}.csv"
    return Response(
        "\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f"attachment; filename=\"report.csv\"; filename*=UTF-8''{quote(name)}"
        },
    )


class ProjectReport(BaseModel):
    project: str
    name: str
    county: str
    light: str
    open_blockers: int
    overdue_blockers: int
    escalated_blockers: int


@router.get("/projects", response_model=Page[ProjectReport])
def project_report(
    request: Request, session: ReadSession, caller: Caller, limit: Limit = 50, cursor: Cursor = None
) -> Page[ProjectReport]:
    """Per project: its light (红黄绿) and open / overdue / escalated blockers — of all its
    blockers, as `GET /projects/{code}` has them — for the projects this key sees."""
    now = request.app.state.ctx.clock.now()
    seen = visible_projects(caller)
    query = select(Blocker).where(Blocker.state.not_in(CLOSED_STATES))
    if seen is not None:
        query = query.where(Blocker.project_id.in_(select(Project.id).where(seen)))
    lights = Lights(request, session)
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for blocker in session.exec(query):
        c = counts[blocker.project_id]
        c[0] += 1
        c[1] += int(is_overdue(blocker, now))
        c[2] += int(blocker.escalation_level > 0)
        c[3] = max(c[3], lights.of(blocker))
    projects = select(Project, Unit).join(Unit, Unit.id == Project.county_unit_id)
    if seen is not None:
        projects = projects.where(seen)
    out = []
    for project, county in session.exec(projects.order_by(Project.id)):
        o, late, esc, light = counts.get(project.id, [0, 0, 0, 0])
        out.append(
            ProjectReport(
                project=project.code,
                name=project.name,
                county=county.code,
                light=LIGHTS[light],
                open_blockers=o,
                overdue_blockers=late,
                escalated_blockers=esc,
            )
        )
    return _page(out, limit, cursor)
