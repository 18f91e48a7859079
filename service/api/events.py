"""The global event feed, oldest first, for systems that mirror the timeline."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlmodel import select

from service.api.blocker_views import EventOut, event_out, visibility_clause
from service.api.common import ERROR_RESPONSES, MAX_ID, Limit, Page
from service.deps import Caller, ReadSession, UnitOfWorkRoute
from service.models import Blocker, Event

router = APIRouter(
    prefix="/api/v1/events", tags=["events"], responses=ERROR_RESPONSES, route_class=UnitOfWorkRoute
)


@router.get("", response_model=Page[EventOut])
def list_events(
    request: Request,
    session: ReadSession,
    caller: Caller,
    after: Annotated[
        int, Query(ge=0, le=MAX_ID, description="Event id cursor: events after this one")
    ] = 0,
    limit: Limit = 50,
) -> Page[EventOut]:
    query = select(Event).where(Event.id > after).order_by(Event.id).limit(limit)
    clause = visibility_clause(caller)
    if clause is not None:
        query = query.where(Event.blocker_id.in_(select(Blocker.id).where(clause)))
    rows = list(session.exec(query))
    tz = request.app.state.settings.tz
    return Page(
        items=[event_out(e, tz) for e in rows], next_cursor=str(rows[-1].id) if rows else None
    )
