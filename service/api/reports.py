"""通报、考评: per-unit rates and ranking, per-project lights."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlmodel import func, select

from service.api.blocker_views import visibility_clause
from service.api.common import ERROR_RESPONSES
from service.api.projects import CLOSED_STATES, LIGHTS, Lights
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
    """One responsible unit over [from, to]. Counts are of blockers, not of events."""

    unit: str
    name: str
    level: str
    assigned: int = Field(description="Blockers assigned to the unit in the period")
    acknowledged_on_time: int = Field(
        description="Of those, acknowledged before the acknowledge-by time was missed"
    )
    resolved: int = Field(description="Blockers the unit reported resolved in the period")
    resolved_on_time: int = Field(
        description="Blockers that came due in the period (reported resolved or passed their "
        "deadline) and were reported resolved without passing it"
    )
    overdue: int = Field(description="Blockers that passed their deadline in the period")
    returned: int = Field(description="Verifications in the period not satisfied (退回重办)")
    verified_satisfied: int
    verifications: int = Field(description="Verifications (回访) in the period")
    response_rate: float | None = Field(description="响应率: acknowledged_on_time / assigned")
    on_time_rate: float | None = Field(
        description="按期办结率: resolved_on_time / blockers that came due in the period"
    )
    satisfaction_rate: float | None = Field(
        description="满意率: verified_satisfied / verifications"
    )
    average_days_to_close: float | None = Field(
        description="Calendar days from first assignment to closing, of blockers closed in "
        "the period"
    )
    open_blockers: int = Field(description="The unit's open blockers now")
    rank: int


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


class _Tally:
    """What one unit's blockers did in the period, blocker by blocker."""

    def __init__(self) -> None:
        self.assigned: set[int] = set()
        self.acked_on_time: set[int] = set()
        self.resolved: set[int] = set()
        self.resolved_in_time: set[int] = set()
        self.late: set[int] = set()
        self.verifications = self.satisfied = 0
        self.close_days: list[float] = []

    def counts(self) -> dict[str, int]:
        came_due = self.resolved_in_time | self.late
        return {
            "assigned": len(self.assigned),
            "acknowledged_on_time": len(self.acked_on_time),
            "resolved": len(self.resolved),
            "resolved_on_time": len(self.resolved_in_time - self.late),
            "overdue": len(self.late),
            "returned": self.verifications - self.satisfied,
            "verified_satisfied": self.satisfied,
            "verifications": self.verifications,
            "_came_due": len(came_due),
        }


def _tally(session, caller, start: datetime, end: datetime) -> dict[int, _Tally]:
    """Walk the events from `start` on (later ones only settle whether an assignment made in
    the period was acknowledged on time) of the blockers the caller sees."""
    query = (
        select(Event, Blocker.unit_id)
        .join(Blocker, Blocker.id == Event.blocker_id)
        .where(Event.at >= start, Blocker.unit_id.is_not(None))
        .order_by(Event.blocker_id, Event.seq)
    )
    clause = visibility_clause(caller)
    if clause is not None:
        query = query.where(clause)
    tallies: dict[int, _Tally] = defaultdict(_Tally)
    waiting_ack: dict[int, bool] = {}  # blocker → assigned in the period, ack-by not yet missed
    closed: dict[int, tuple[int, datetime]] = {}
    for event, unit_id in session.exec(query):
        t, bid, inside = tallies[unit_id], event.blocker_id, event.at < end
        action = event.action
        if action == "assign" and inside:
            t.assigned.add(bid)
            waiting_ack[bid] = True
        elif action == "acknowledge_missed":
            waiting_ack[bid] = False
        elif action == "acknowledge" and waiting_ack.pop(bid, False):
            t.acked_on_time.add(bid)
        if not inside:
            continue
        if action == "report_resolved":
            t.resolved.add(bid)
            if event.state_before != "deadline":
                t.resolved_in_time.add(bid)
        elif action == "deadline_passed":
            t.late.add(bid)
        elif action == "verify":
            t.verifications += 1
            t.satisfied += event.payload.get("satisfied") is True
        elif action == "close":
            closed[bid] = (unit_id, event.at)
    if closed:
        first_assign = dict(
            session.exec(
                select(Event.blocker_id, func.min(Event.at))
                .where(Event.blocker_id.in_(list(closed)), Event.action == "assign")
                .group_by(Event.blocker_id)
            ).all()
        )
        for bid, (unit_id, at) in closed.items():
            if bid in first_assign:
                days = (at - first_assign[bid]).total_seconds() / 86400
                tallies[unit_id].close_days.append(days)
    return tallies


@router.get("/units", response_model=list[UnitReport])
def unit_report(
    request: Request,
    session: ReadSession,
    caller: Caller,
    from_: Annotated[date, Query(alias="from", description="First day, YYYY-MM-DD")],
    to: Annotated[date, Query(description="Last day, YYYY-MM-DD")],
    level: Literal["township", "county", "city", "province"] | None = None,
) -> list[UnitReport]:
    """通报排名: rates per responsible unit over [from, to] (local days), ranked by on-time
    rate, then response rate, then fewest overdue. Units with open blockers are listed even
    when nothing happened to them in the period."""
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
    tallies = _tally(session, caller, start, end)
    open_q = (
        select(Blocker.unit_id, func.count())
        .where(Blocker.unit_id.is_not(None), Blocker.state.not_in(CLOSED_STATES))
        .group_by(Blocker.unit_id)
    )
    clause = visibility_clause(caller)
    if clause is not None:
        open_q = open_q.where(clause)
    open_now = dict(session.exec(open_q).all())
    unit_ids = set(tallies) | set(open_now)
    units = {u.id: u for u in session.exec(select(Unit).where(Unit.id.in_(list(unit_ids))))}
    rows = []
    for unit_id in unit_ids:
        unit = units.get(unit_id)
        if unit is None or (level and unit.level != level):
            continue
        t = tallies.get(unit_id) or _Tally()
        n = t.counts()
        came_due = n.pop("_came_due")
        days = t.close_days
        rows.append(
            UnitReport(
                unit=unit.code,
                name=unit.name,
                level=unit.level,
                **n,
                response_rate=_rate(n["acknowledged_on_time"], n["assigned"]),
                on_time_rate=_rate(n["resolved_on_time"], came_due),
                satisfaction_rate=_rate(n["verified_satisfied"], n["verifications"]),
                average_days_to_close=round(sum(days) / len(days), 2) if days else None,
                open_blockers=open_now.get(unit_id, 0),
                rank=0,
            )
        )
    rows.sort(
        key=lambda r: (
            r.on_time_rate is None,
            -(r.on_time_rate or 0),
            -(r.response_rate or 0),
            r.overdue,
            r.unit,
        )
    )
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
    lights = Lights(request, session)
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for blocker in session.exec(query):
        c = counts[blocker.project_id]
        c[0] += 1
        c[1] += int(is_overdue(blocker, now))
        c[2] += int(blocker.escalation_level > 0)
        c[3] = max(c[3], lights.of(blocker))
    projects = session.exec(
        select(Project, Unit).join(Unit, Unit.id == Project.county_unit_id).order_by(Project.id)
    )
    out = []
    for project, county in projects:
        if not caller.sees_path(county.path) and project.id not in counts:
            continue
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
    return out
