"""How a blocker looks over REST, and which blockers a key can see."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, or_
from sqlmodel import Session, select

from service.api.common import iso_date, local_iso
from service.auth import Principal
from service.models import Blocker, Escalation, Event, Project, Timer, Unit
from service.models.blocker import is_overdue
from service.problems import Problem
from workflows.engine import Actor, allowed_actions


class BlockerOut(BaseModel):
    id: int
    project: str
    title: str
    description: str
    category: str
    state: str
    escalation_level: int
    authority_level: str
    unit: str | None
    officer_id: int | None
    assisting_units: list[str]
    deadline: str | None
    due_at: str | None
    overdue: bool
    version: int
    workflow: str
    complexity: str
    return_count: int
    external_ref: str | None
    reported_by: str | None
    warnings: list[str]
    allowed_actions: list[str] = Field(
        description="What the key that asked may do now (its role and the state)"
    )
    created_at: str | None
    updated_at: str | None
    closed_at: str | None


class EventOut(BaseModel):
    id: int
    blocker_id: int
    seq: int
    at: str
    actor: str
    api_key_id: int | None
    officer_id: int | None
    action: str
    state_before: str | None
    state_after: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class TimerOut(BaseModel):
    id: int
    kind: str
    step: str
    due_at: str
    action: str
    urgent: bool


class BlockerDetail(BlockerOut):
    timeline: list[EventOut]
    timers: list[TimerOut]


def _codes(session: Session, ids: list[int]) -> list[str]:
    if not ids:
        return []
    rows = {u.id: u.code for u in session.exec(select(Unit).where(Unit.id.in_(ids)))}
    return [rows[i] for i in ids if i in rows]


def blocker_out(
    session: Session, blocker: Blocker, request: Request, caller: Principal | None = None
) -> BlockerOut:
    """The blocker as `caller` sees it (its allowed actions are the caller's)."""
    tz = request.app.state.settings.tz
    ctx = request.app.state.ctx
    project = session.get(Project, blocker.project_id)
    unit = session.get(Unit, blocker.unit_id) if blocker.unit_id else None
    return BlockerOut(
        id=blocker.id,
        project=project.code if project else "",
        title=blocker.title,
        description=blocker.description,
        category=blocker.category,
        state=blocker.state,
        escalation_level=blocker.escalation_level,
        authority_level=blocker.authority_level,
        unit=unit.code if unit else None,
        officer_id=blocker.officer_id,
        assisting_units=_codes(session, list(blocker.assisting_unit_ids)),
        deadline=iso_date(blocker.deadline),
        due_at=local_iso(blocker.due_at, tz),
        overdue=is_overdue(blocker, ctx.clock.now()),
        version=blocker.version,
        workflow=blocker.workflow,
        complexity=blocker.complexity,
        return_count=blocker.return_count,
        external_ref=blocker.external_ref,
        reported_by=blocker.reported_by,
        warnings=list(blocker.warnings),
        allowed_actions=[]
        if caller is not None and not caller.has("write")
        else allowed_actions(
            session, ctx, blocker, actor_for(caller) if caller is not None else None
        ),
        created_at=local_iso(blocker.created_at, tz),
        updated_at=local_iso(blocker.updated_at, tz),
        closed_at=local_iso(blocker.closed_at, tz),
    )


def event_out(event: Event, tz) -> EventOut:
    return EventOut(
        id=event.id,
        blocker_id=event.blocker_id,
        seq=event.seq,
        at=local_iso(event.at, tz),
        actor=event.actor,
        api_key_id=event.api_key_id,
        officer_id=event.officer_id,
        action=event.action,
        state_before=event.state_before,
        state_after=event.state_after,
        payload=event.payload,
        prev_hash=event.prev_hash,
        hash=event.hash,
    )


def blocker_detail(
    session: Session, blocker: Blocker, request: Request, caller: Principal | None = None
) -> BlockerDetail:
    tz = request.app.state.settings.tz
    events = session.exec(select(Event).where(Event.blocker_id == blocker.id).order_by(Event.seq))
    timers = session.exec(
        select(Timer)
        .where(Timer.blocker_id == blocker.id, Timer.status == "pending")
        .order_by(Timer.due_at, Timer.id)
    )
    return BlockerDetail(
        **blocker_out(session, blocker, request, caller).model_dump(),
        timeline=[event_out(e, tz) for e in events],
        timers=[
            TimerOut(
                id=t.id,
                kind=t.kind,
                step=t.step,
                due_at=local_iso(t.due_at, tz),
                action=str(t.payload.get("action", "")),
                urgent=t.urgent,
            )
            for t in timers
        ],
    )


def units_in_scope(caller: Principal):
    """The ids of the units in a key's jurisdiction (its unit's subtree, or the city's)."""
    return select(Unit.id).where(Unit.path.startswith(caller.scope_path or "//"))


def visibility_clause(caller: Principal) -> ColumnElement[bool] | None:
    """SQL condition for the blockers a key sees; None means all (the bootstrap admin)."""
    if caller.is_admin:
        return None
    in_units = units_in_scope(caller)
    in_projects = select(Project.id).where(Project.county_unit_id.in_(in_units))
    clauses = [
        Blocker.unit_id.in_(in_units),
        Blocker.unit_id.is_(None) & Blocker.project_id.in_(in_projects),
    ]
    if caller.unit_id is not None:
        clauses.append(
            Blocker.id.in_(
                select(Escalation.blocker_id).where(Escalation.target_unit_id == caller.unit_id)
            )
        )
    if caller.key_id is not None:
        clauses.append(Blocker.created_by_key_id == caller.key_id)
    return or_(*clauses)


def visible_blocker(session: Session, caller: Principal, blocker_id: int) -> Blocker | None:
    query = select(Blocker).where(Blocker.id == blocker_id)
    clause = visibility_clause(caller)
    if clause is not None:
        query = query.where(clause)
    return session.exec(query).first()


def visible_blocker_or_404(session: Session, caller: Principal, blocker_id: int) -> Blocker:
    blocker = visible_blocker(session, caller, blocker_id)
    if blocker is None:
        raise Problem(404, f"There is no blocker {blocker_id} that this key can see.")
    return blocker


def actor_for(caller: Principal) -> Actor:
    return Actor(
        name=caller.actor,
        key_id=caller.key_id,
        officer_id=caller.officer_id,
        unit_id=caller.unit_id,
        unit_path=caller.unit_path,
        scope_path=caller.scope_path,
        is_admin=caller.is_admin,  # the bootstrap key; any other key acts in its roles
        is_taskforce=caller.is_taskforce,
    )
