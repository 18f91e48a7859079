"""The timer sweep: claim due timers in due order, fire each through the one gate.

A timer row is claimed in the same transaction that fires it, so a crash before the
commit leaves it pending for the next sweep, and the unique (blocker, kind, step) key
plus the status check make a second firing impossible.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlmodel import Session, select

from service.db import Database
from service.models import Blocker, Timer
from workflows import engine
from workflows.batch import claim_rows, fire_batch
from workflows.context import EngineContext
from workflows.timers import next_due

log = logging.getLogger("duban.sweep")

# Fire batches set-wise (workflows.batch). False fires every timer one by one through the
# gate: the reference that the batch path is tested against, and nothing else.
SET_WISE = True


def claim_due(
    session: Session, ctx: EngineContext, now: datetime, batch: int, *, naive: bool = False
) -> list[Timer]:
    query = (
        select(Timer)
        .where(Timer.status == "pending", Timer.due_at <= now)
        .order_by(Timer.due_at, Timer.id)
        .limit(batch)
    )
    if ctx.lock_rows and not naive:
        query = query.with_for_update(skip_locked=True)
    return list(session.exec(query))


def fire_timer(
    session: Session, ctx: EngineContext, timer: Timer, now: datetime, *, naive: bool = False
) -> bool:
    """Fire one claimed timer if it still applies; returns whether it fired.

    `naive` drops the claim's protections (no skip-locked, no re-check): only the
    fault tests' control run uses it, to prove the tests can see duplicates.
    """
    if timer.status != "pending" or timer.due_at > now:
        return False
    query = select(Blocker).where(Blocker.id == timer.blocker_id)
    if ctx.lock_rows and not naive:
        # Never wait for a blocker another transaction holds: leave the timer for the next sweep.
        query = query.with_for_update(skip_locked=True)
    blocker = session.exec(query.execution_options(populate_existing=True)).first()
    if blocker is None:
        return False
    if not naive:
        session.refresh(timer)
        if timer.status != "pending":
            return False
    if ctx.lock_rows and not naive:
        # Firing may cancel the blocker's other pending timers; if another sweeper has claimed
        # one, waiting for it can deadlock (each waits on the other's claim): leave this one.
        others = select(Timer.id).where(Timer.blocker_id == blocker.id, Timer.status == "pending")
        held = session.exec(others.with_for_update(skip_locked=True)).all()
        if len(held) != len(session.exec(others).all()):
            return False
    action = str(timer.payload.get("action", ""))
    if blocker.state != timer.payload.get("state"):
        timer.status = "cancelled"
        return False
    with session.begin_nested():
        try:
            engine.apply(
                session,
                ctx,
                blocker.id,
                action,
                engine.SYSTEM_TIMER,
                {"timer": timer.kind, "step": timer.step},
                timer=timer,
            )
        except engine.EngineError as exc:
            log.warning("timer %s (%s) no longer applies: %s", timer.id, timer.kind, exc.detail)
            timer.status = "cancelled"
            return False
    timer.status = "fired"
    timer.fired_at = now
    return True


def _one_by_one(
    session: Session, ctx: EngineContext, timers: list, now: datetime, *, naive: bool = False
) -> tuple[int, int]:
    """Each timer through the gate on its own; returns (fired, settled)."""
    fired = settled = 0
    for timer in timers:
        if fire_timer(session, ctx, timer, now, naive=naive):
            fired += 1
        if timer.status != "pending":
            settled += 1
    return fired, settled


_ANYTHING_DUE = "SELECT 1 FROM timers WHERE status = 'pending' AND due_at <= {param} LIMIT 1"


def anything_due(db: Database, now: datetime) -> bool:
    """The idle tick: one indexed probe on a pooled connection, no ORM, no write lock.

    Most sweeps find nothing due; they should cost microseconds, not a write transaction.
    """
    raw = db.read_engine.raw_connection()
    try:
        cursor = raw.cursor()
        if db.is_sqlite:
            # The storage format of UTCDateTime on SQLite: naive UTC text.
            value = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            cursor.execute(_ANYTHING_DUE.format(param="?"), (value,))
        else:
            cursor.execute(_ANYTHING_DUE.format(param="%s"), (now,))
        found = cursor.fetchone() is not None
        cursor.close()
    finally:
        raw.close()
    return found


def sweep_once(
    db: Database,
    ctx: EngineContext,
    *,
    now: datetime | None = None,
    batch: int = 500,
    naive: bool = False,
) -> tuple[int, int]:
    """Fire everything due at `now` (default: the clock), batch by batch.

    Returns (fired, settled): timers fired, and timers fired or cancelled as stale.
    """
    now = now or ctx.clock.now()
    fired = settled = 0
    if not naive and not anything_due(db, now):
        return fired, settled
    while True:
        with db.unit_of_work() as session:
            if naive or not SET_WISE:
                timers: list = claim_due(session, ctx, now, batch, naive=naive)
                count, progressed = _one_by_one(session, ctx, timers, now, naive=naive)
            else:
                timers = claim_rows(session, ctx, now, batch)
                count, progressed, alone = fire_batch(session, ctx, timers, now)
                more = _one_by_one(session, ctx, [session.get(Timer, i) for i in alone], now)
                count, progressed = count + more[0], progressed + more[1]
            fired += count
        settled += progressed
        # A short batch is not the end when it made progress: firing may have planned the
        # next step of a repeating timer that is due already (after downtime); claim again.
        if not timers or progressed == 0:
            return fired, settled


def advance_clock(db: Database, ctx: EngineContext, target: datetime) -> int:
    """Move the simulation clock to `target`, firing what falls due at the moment it falls due.

    Time may also be set back; fired timers stay fired, so nothing fires twice or early.
    """
    clock = ctx.clock
    fired = 0
    with clock.lock:  # type: ignore[attr-defined]
        while True:
            with db.unit_of_work(readonly=True) as session:
                due = next_due(session, until=target)
            if due is None:
                break
            clock.set(max(clock.now(), due))  # type: ignore[attr-defined]
            count, settled = sweep_once(db, ctx, now=clock.now())
            fired += count
            if settled == 0:
                break  # what is due is held by another sweeper; don't spin
        clock.set(target)  # type: ignore[attr-defined]
    return fired
