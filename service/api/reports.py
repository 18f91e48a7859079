"""通报、考评: per-unit rates and ranking, per-project lights."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlmodel import select

from service.api.blocker_views import visibility_clause
from service.api.common import ERROR_RESPONSES
from service.api.projects import CLOSED_STATES, project_light
from service.deps import Caller, ReadSession, UnitOfWorkRoute
from service.models import Blocker, Event, Project, Unit
from service.models.blocker import is_overdue
from service.problems import Problem

router = APIRouter(
    prefix="/api/v1/reports",
    tags=["reports"],
    responses=ERROR_RESPONSES,
    route_class=UnitOfWorkRoute,
)


class UnitReport(BaseModel):
    unit: str
    name: str
    level: str
    assigned: int
    acknowledged_on_time: int
    resolved: int
    resolved_on_time: int
    overdue: int
    returned: int
    verified_satisfied: int
    verifications: int
    response_rate: float | None
    on_time_rate: float | None
    satisfaction_rate: float | None
    average_days_to_close: float | None
    rank: int


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@router.get("/units", response_model=list[UnitReport])
def unit_report(
    request: Request,
    session: ReadSession,
    caller: Caller,
    from_: Annotated[date, Query(alias="from", description="First day, YYYY-MM-DD")],
    to: Annotated[date, Query(description="Last day, YYYY-MM-DD")],
    level: Literal["township", "county", "city", "province"] | None = None,
) -> list[UnitReport]:
    """Rates per responsible unit for events in [from, to] (local days), ranked by on-time rate."""
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
    query = (
        select(Event, Blocker)
        .join(Blocker, Blocker.id == Event.blocker_id)
        .where(Event.at >= start, Event.at < end)
        .order_by(Event.blocker_id, Event.seq)
    )
    clause = visibility_clause(caller)
    if clause is not None:
        query = query.where(clause)
    stats: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    closes: dict[int, list[float]] = defaultdict(list)
    missed_ack: set[int] = set()
    assigned_at: dict[int, datetime] = {}
    for event, blocker in session.exec(query):
        unit_id = blocker.unit_id
        if unit_id is None:
            continue
        s = stats[unit_id]
        if event.action == "assign":
            s["assigned"] += 1
            assigned_at[blocker.id] = event.at
        elif event.action == "acknowledge_missed":
            missed_ack.add(blocker.id)
        elif event.action == "acknowledge" and blocker.id not in missed_ack:
            s["acknowledged_on_time"] += 1
        elif event.action == "report_resolved":
            s["resolved"] += 1
            # On time = reported before the deadline passed (not from state `deadline`).
            if event.state_before != "deadline":
                s["resolved_on_time"] += 1
        elif event.action == "deadline_passed":
            s["overdue"] += 1
        elif event.action == "verify":
            s["verifications"] += 1
            if event.payload.get("satisfied") is True:
                s["verified_satisfied"] += 1
            else:
                s["returned"] += 1
        elif event.action == "close" and blocker.id in assigned_at:
            closes[unit_id].append((event.at - assigned_at[blocker.id]).total_seconds() / 86400)
    units = {u.id: u for u in session.exec(select(Unit).where(Unit.id.in_(list(stats))))}
    rows = []
    for unit_id, s in stats.items():
        unit = units.get(unit_id)
        if unit is None or (level and unit.level != level):
            continue
        n = {
            k: int(s.get(k, 0))
            for k in (
                "assigned",
                "acknowledged_on_time",
                "resolved",
                "resolved_on_time",
                "overdue",
                "returned",
                "verified_satisfied",
                "verifications",
            )
        }
        days = closes.get(unit_id)
        rows.append(
            UnitReport(
                unit=unit.code,
                name=unit.name,
                level=unit.level,
                **n,
                response_rate=_rate(n["acknowledged_on_time"], n["assigned"]),
                on_time_rate=_rate(n["resolved_on_time"], n["resolved"]),
                satisfaction_rate=_rate(n["verified_satisfied"], n["verifications"]),
                average_days_to_close=round(sum(days) / len(days), 2) if days else None,
                rank=0,
            )
        )
    rows.sort(key=lambda r: (-(r.on_time_rate or 0), -(r.response_rate or 0), r.overdue, r.unit))
    for i, row in enumerate(rows, 1):
        row.rank = i
    return rows


class ProjectReport(BaseModel):
    project: str
    name: str
    county: str
    light: str
    open_blockers: int
    overdue_blockers: int
    escalated_blockers: int


@router.get("/projects", response_model=list[ProjectReport])
def project_report(request: Request, session: ReadSession, caller: Caller) -> list[ProjectReport]:
    """Per project: its light (红黄绿) and open / overdue / escalated blockers."""
    now = request.app.state.ctx.clock.now()
    query = select(Blocker).where(Blocker.state.not_in(CLOSED_STATES))
    clause = visibility_clause(caller)
    if clause is not None:
        query = query.where(clause)
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for blocker in session.exec(query):
        c = counts[blocker.project_id]
        c[0] += 1
        c[1] += int(is_overdue(blocker, now))
        c[2] += int(blocker.escalation_level > 0)
    projects = session.exec(
        select(Project, Unit).join(Unit, Unit.id == Project.county_unit_id).order_by(Project.id)
    )
    out = []
    for project, county in projects:
        if not caller.sees_path(county.path) and project.id not in counts:
            continue
        o, late, esc = counts.get(project.id, [0, 0, 0])
        out.append(
            ProjectReport(
                project=project.code,
                name=project.name,
                county=county.code,
                light=project_light(o, late, esc),
                open_blockers=o,
                overdue_blockers=late,
                escalated_blockers=esc,
            )
        )
    return out
