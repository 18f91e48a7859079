"""The daily digest (每日督办): at 09:00 on working days, one message per unit group: what
is in the unit's escalation queue (a level's receivers: the general taskforce, a vice
mayor's office, the city government), then its own blockers due within 3 working days.

Driven by business time from the sweep tick (so the simulation clock drives it too);
one row per channel and day, keyed by its delivery id, so it is never sent twice. A group
with nothing to list at the digest's moment gets none that day, not one later in the day
(after a restart the process cannot tell, and catches up).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, select

from service.models import Blocker, Escalation, Unit
from workflows import ladder
from workflows.context import EngineContext
from workflows.outbox import add_unit_message, already_written, chat_channels, message_context
from workflows.world import World

DIGEST_AT = "09:00"
OPEN_STATES = ("assigned", "supervised", "deadline")
LISTED = 500  # a platform's limit cuts a long list further, counting what it leaves out


def _items_for_unit(session: Session, ctx, unit: Unit, now: datetime, horizon) -> list[dict]:
    cal = ctx.calendars.get(session)
    rows = session.exec(
        select(Blocker)
        .where(
            Blocker.unit_id == unit.id, Blocker.state.in_(OPEN_STATES), Blocker.due_at <= horizon
        )
        .order_by(Blocker.due_at, Blocker.id)
        .limit(LISTED)
    )
    world = World(session)
    # Not signed for yet: labelled 签收提醒, not 到期提醒.
    return [
        message_context(
            world, b, cal, now,
            kind="acknowledge_reminder" if b.state == "assigned" else "deadline_reminder",
        )
        for b in rows
    ]  # fmt: skip


def _items_for_queue(session: Session, ctx, unit: Unit, now: datetime) -> list[dict]:
    cal = ctx.calendars.get(session)
    entries = session.exec(
        select(Escalation.blocker_id, Escalation.reason)
        .where(
            Escalation.target_unit_id == unit.id, Escalation.status.in_(("open", "acknowledged"))
        )
        .order_by(Escalation.id)
    )
    # The latest entry of each blocker in this queue (a unit's own entry has its message).
    why = {blocker_id: reason for blocker_id, reason in entries if blocker_id is not None}
    # The longest overdue first (no deadline last), so a platform's cut drops the least urgent.
    rows = session.exec(
        select(Blocker)
        .where(Blocker.id.in_(list(why)))
        .order_by(Blocker.due_at.is_(None), Blocker.due_at, Blocker.id)
        .limit(LISTED)
    )
    world = World(session)
    return [message_context(world, b, cal, now, kind="escalated", reason=why[b.id]) for b in rows]


CATCH_UP_DAYS = 92  # a longer jump writes the digests of its last quarter only


def digest_moments(session: Session, ctx: EngineContext, start: datetime, end: datetime) -> list:
    """The 09:00s of working days in (start, end]: where a jump of the simulation clock
    stops to write the day's digests (and a briefing) as the running service would have.
    Each month's first working day always (the briefing, which may escalate a unit ranked
    last: none is lost however long the jump); the other days only when a unit has a chat
    group, and only in the last `CATCH_UP_DAYS` of a long jump."""
    chats = bool(chat_channels(session))
    cal = ctx.calendars.get(session)
    day, last = cal.local_date(start), cal.local_date(end)
    digests_from = last - timedelta(days=CATCH_UP_DAYS)
    moments = []
    while day <= last:
        moment = cal.at_local(day, DIGEST_AT)
        if start < moment <= end and cal.is_working_day(day):
            month_opens = cal.next_working_day(day.replace(day=1), include_self=True) == day
            if month_opens or (chats and day >= digests_from):
                moments.append(moment)
        day += timedelta(days=1)
    return moments


def enqueue_daily_digests(session: Session, ctx: EngineContext) -> int:
    """Write today's digests if it is a working day, past 09:00, and not done yet."""
    now = ctx.clock.now()
    cal = ctx.calendars.get(session)
    today = cal.local_date(now)
    if not cal.is_working_day(today) or now < cal.at_local(today, DIGEST_AT):
        return 0
    horizon = cal.end_of_day(cal.add_working_days(today, 3))
    if ctx.digested[0] != today.isoformat():
        ctx.digested = (today.isoformat(), set())
    settled = ctx.digested[1]
    written = 0
    for channel in chat_channels(session):
        if channel.id in settled:
            continue
        delivery_id = f"daily-{today.isoformat()}-{channel.id}"
        if already_written(session, delivery_id):
            settled.add(channel.id)
            continue
        unit = session.get(Unit, channel.unit_id)
        if unit is None:
            continue
        # A level's escalation queue (the general taskforce, a vice mayor's office, the city
        # government), then the unit's own blockers due soon, each blocker once.
        items = _items_for_queue(session, ctx, unit, now)
        if not (unit.kind == "taskforce" and ladder.general_taskforce(session, unit).id == unit.id):
            listed = {i["blocker_id"] for i in items}
            own = _items_for_unit(session, ctx, unit, now, horizon)
            items += [i for i in own if i["blocker_id"] not in listed]
        if not items:
            settled.add(channel.id)  # nothing at the digest's moment: none today
            continue
        add_unit_message(
            session,
            channel,
            kind="daily_digest",
            event_type="digest.daily",
            delivery_id=delivery_id,
            context={"items": items, "date": today.isoformat(), "unit_name": unit.name},
            now=now,
        )
        written += 1
    session.flush()
    return written
