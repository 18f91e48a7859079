"""The escalation queue (升级督办): each level works its own queue, oldest first."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlmodel import Session, select

from service.api.blocker_views import actor_for
from service.api.common import (
    ERROR_RESPONSES,
    Cursor,
    Limit,
    Page,
    RowId,
    Strict,
    decode_cursor,
    local_iso,
    page_of,
)
from service.auth import Principal, key_id_of, require_scope
from service.deps import Caller, ReadSession, UnitOfWorkRoute, WriteSession
from service.models import ApiKey, Escalation, Officer, Unit
from service.problems import Problem
from workflows import engine
from workflows.escalation_queue import record_queue_action

router = APIRouter(
    prefix="/api/v1/escalations",
    tags=["escalations"],
    responses=ERROR_RESPONSES,
    route_class=UnitOfWorkRoute,
)


class EscalationOut(BaseModel):
    id: int
    blocker_id: int | None = Field(
        description="The blocker escalated; null when a unit itself is (reason `ranked_last`: "
        "last in the monthly ranking for consecutive months, named in `from_unit`)"
    )
    level: int
    reason: str = Field(
        description="Why, as the workflow definition names it: overdue, stuck, unacknowledged, "
        "requested, failed_verification, authority; ranked_last for a unit",
        examples=["overdue"],
    )
    detail: str
    status: str
    from_unit: str | None
    unit: str | None = Field(description="The unit whose queue this entry is in")
    created_at: str | None
    acknowledged_at: str | None
    acknowledged_by: str | None = Field(description="The API key that acknowledged it (key:<id>)")
    acknowledged_by_name: str | None = Field(
        description="Who that is: the key's officer and unit, or its unit",
        examples=["王五（原阳县自然资源局）"],
    )
    handled_at: str | None
    handled_by: str | None
    handled_by_name: str | None
    note: str | None


class NoteBody(Strict):
    note: str | None = Field(None, max_length=5000, examples=["已协调市自然资源和规划局加快办理"])


def actor_name(session: Session, actor: str | None) -> str | None:
    """A person's reading of an actor recorded as `key:<id>`: the key's officer with the
    officer's unit, or the key's unit; the bootstrap key is the system administrator."""
    if actor is None:
        return None
    if actor == "admin":
        return "系统管理员"
    key_id = key_id_of(actor)
    key = session.get(ApiKey, key_id) if key_id is not None else None
    if key is None:
        return actor
    officer = session.get(Officer, key.officer_id) if key.officer_id else None
    unit = session.get(Unit, officer.unit_id if officer else key.unit_id)
    unit_name = unit.name if unit else ""
    return f"{officer.name}（{unit_name}）" if officer else unit_name


def escalation_out(session: Session, entry: Escalation, request: Request) -> EscalationOut:
    tz = request.app.state.settings.tz
    src = session.get(Unit, entry.from_unit_id) if entry.from_unit_id else None
    dst = session.get(Unit, entry.target_unit_id) if entry.target_unit_id else None
    return EscalationOut(
        id=entry.id,
        blocker_id=entry.blocker_id,
        level=entry.level,
        reason=entry.reason,
        detail=entry.detail,
        status=entry.status,
        from_unit=src.code if src else None,
        unit=dst.code if dst else None,
        created_at=local_iso(entry.created_at, tz),
        acknowledged_at=local_iso(entry.acknowledged_at, tz),
        acknowledged_by=entry.acknowledged_by,
        acknowledged_by_name=actor_name(session, entry.acknowledged_by),
        handled_at=local_iso(entry.handled_at, tz),
        handled_by=entry.handled_by,
        handled_by_name=actor_name(session, entry.handled_by),
        note=entry.note,
    )


def _queue_filter(caller: Principal):
    """A key sees the queue of its own unit (its level); the bootstrap admin every queue."""
    if caller.is_admin:
        return None
    return Escalation.target_unit_id == caller.unit_id


@router.get("", response_model=Page[EscalationOut])
def list_escalations(
    request: Request,
    session: ReadSession,
    caller: Caller,
    status: Literal["open", "acknowledged", "handled", "closed"] | None = None,
    level: Annotated[int | None, Query(ge=0, le=10)] = None,
    unit: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[EscalationOut]:
    """The caller's escalation queue, oldest first."""
    after = decode_cursor(cursor)
    query = select(Escalation).where(Escalation.id > after).order_by(Escalation.id).limit(limit + 1)
    clause = _queue_filter(caller)
    if clause is not None:
        query = query.where(clause)
    if status:
        query = query.where(Escalation.status == status)
    if level is not None:
        query = query.where(Escalation.level == level)
    if unit:
        query = query.where(Escalation.target_unit_id.in_(select(Unit.id).where(Unit.code == unit)))
    rows = list(session.exec(query))
    return page_of(rows, limit, lambda e: escalation_out(session, e, request))


def _act(
    kind: str, escalation_id: RowId, body: NoteBody | None, request: Request, session, caller
) -> EscalationOut:
    require_scope(caller, "write")
    entry = session.get(Escalation, escalation_id)
    if entry is None:
        raise Problem(404, f"There is no escalation {escalation_id}.")
    if not (caller.is_admin or entry.target_unit_id == caller.unit_id):
        raise Problem(
            403, f"Escalation {escalation_id} is in another level's queue, not this key's."
        )
    try:
        record_queue_action(
            session,
            request.app.state.ctx,
            entry,
            kind,
            actor_for(caller),
            body.note if body else None,
        )
    except engine.EngineError as exc:
        raise Problem(exc.status, exc.detail, **exc.extra) from exc
    return escalation_out(session, entry, request)


@router.post(
    "/{escalation_id}/acknowledge",
    response_model=EscalationOut,
    responses={409: ERROR_RESPONSES[409]},
)
def acknowledge_escalation(
    escalation_id: RowId,
    request: Request,
    session: WriteSession,
    caller: Caller,
    body: NoteBody | None = None,
) -> EscalationOut:
    """The receiving level has seen it (recorded on the blocker's timeline too)."""
    return _act("acknowledge", escalation_id, body, request, session, caller)


@router.post(
    "/{escalation_id}/handle", response_model=EscalationOut, responses={409: ERROR_RESPONSES[409]}
)
def handle_escalation(
    escalation_id: RowId,
    request: Request,
    session: WriteSession,
    caller: Caller,
    body: NoteBody | None = None,
) -> EscalationOut:
    """The receiving level has dealt with it (recorded on the blocker's timeline too)."""
    return _act("handle", escalation_id, body, request, session, caller)
