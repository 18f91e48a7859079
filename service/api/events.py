"""The global event feed, oldest first, for systems that mirror the timeline."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import and_, func, or_
from sqlmodel import select

from service.api.blocker_views import EventOut, event_out, visibility_clause
from service.api.common import ERROR_RESPONSES, MAX_ID, Limit, Page
from service.deps import Caller, ReadSession, UnitOfWorkRoute
from service.models import Blocker, Event
from service.models.event import EVENT_TX

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
    """Every event, oldest first: in the order of the transactions that wrote them (ids
    within one), and only once every transaction that began before them has ended, so a
    cursor never passes an event that commits later. Pass the last `id` (`next_cursor`)
    back as `after`."""
    tx = EVENT_TX
    query = select(Event).order_by(tx, Event.id).limit(limit)
    if after:
        # The cursor's place: its event's transaction (or the nearest event before it).
        at = session.exec(
            select(tx).where(Event.id <= after).order_by(Event.id.desc()).limit(1)
        ).first()
        at = -1 if at is None else at
        query = query.where(or_(tx > at, and_(tx == at, Event.id > after)))
    if session.get_bind().dialect.name == "postgresql":
        # Transactions older than the oldest one still running have all ended: their
        # events are all in, and nothing can commit before them any more.
        query = query.where(tx < func.txid_snapshot_xmin(func.txid_current_snapshot()))
    clause = visibility_clause(caller)
    if clause is not None:
        query = query.where(Event.blocker_id.in_(select(Blocker.id).where(clause)))
    rows = list(session.exec(query))
    tz = request.app.state.settings.tz
    return Page(
        items=[event_out(e, tz) for e in rows], next_cursor=str(rows[-1].id) if rows else None
    )
