"""Fire a sweep batch set-wise: the gate's own steps for many timers, in a few statements.

When many deadlines fall due together (a holiday's end, a restart after downtime) the
sweep would otherwise run the whole gate once per timer, ~20 statements each. Here one
batch is read with a handful of set-wise queries (timers, blockers, reference data),
each blocker goes through `engine.perform` — the same effects, event, timers and
messages as `engine.apply` — and the results are written with one statement per table.

Only the timer actions whose effects are known to be set-safe take this path (escalate,
remind-then-escalate, plain reminders); anything else is fired one by one through the
gate, in the same transaction. A batch ends before a blocker's second timer: that one and
everything due after it wait for the next round, so each timer sees the state the one
before left, and events are written in due order.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Row, select, update
from sqlmodel import Session

from service.db import among, among_selected
from service.models import Blocker, Event, Timer
from workflows import engine
from workflows.bulk import insert_rows, update_rows
from workflows.context import EngineContext
from workflows.definition import Workflow
from workflows.effects import escalates_nowhere
from workflows.outbox import drop_unsent, unsent_reminders
from workflows.world import World

SET_SAFE_EFFECTS = frozenset({"escalate", "remind_then_escalate"})
BLOCKERS = Blocker.__table__
TIMERS = Timer.__table__
EVENTS = Event.__table__
# What the gate reads and writes on a blocker for the set-safe actions (not the free text
# or the JSON lists, which those actions neither read nor change).
STEP_COLUMNS = [
    BLOCKERS.c[name]
    for name in (
        "id", "project_id", "title", "category", "authority_level", "workflow", "state",
        "escalation_level", "unit_id", "officer_id", "deadline", "due_at", "complexity",
        "version", "last_seq", "last_hash", "updated_at", "closed_at", "return_count",
        "created_by_key_id", "external_ref",
    )
]  # fmt: skip


def set_safe(workflow: Workflow, action: str, state: str) -> bool:
    spec = workflow.definition.actions.get(action)
    return (
        spec is not None
        and state in spec.from_
        and "system" in spec.actors
        and not spec.branches
        and not spec.requires
        and not spec.restart
        and set(spec.effects) <= SET_SAFE_EFFECTS
    )


def claim_rows(session: Session, ctx: EngineContext, now: datetime, batch: int) -> list[Row]:
    """Due timers in due order, as plain rows, locked (skipping others' claims) on PostgreSQL."""
    query = (
        select(TIMERS)
        .where(TIMERS.c.status == "pending", TIMERS.c.due_at <= now)
        .order_by(TIMERS.c.due_at, TIMERS.c.id)
        .limit(batch)
    )
    if ctx.lock_rows:
        query = query.with_for_update(skip_locked=True)
    return list(session.execute(query))


def _lock_blockers(session: Session, ctx: EngineContext, ids: list[int]) -> dict[int, Any]:
    """The batch's blockers, locked; a blocker another transaction holds is left out."""
    query = select(*STEP_COLUMNS).where(among(session, BLOCKERS.c.id, ids))
    if ctx.lock_rows:
        query = query.with_for_update(skip_locked=True)
    return {row.id: SimpleNamespace(**row._mapping) for row in session.execute(query)}


def fire_batch(
    session: Session, ctx: EngineContext, rows: list[Row], now: datetime
) -> tuple[int, int, list[int]]:
    """Fire the claimed timers that still apply set-wise; returns (fired, settled, alone):
    `alone` is a timer that must go through the gate on its own, next (at most one)."""
    blockers = _lock_blockers(session, ctx, list(dict.fromkeys(r.blocker_id for r in rows)))
    first: dict[int, Row] = {}
    for row in rows:
        if row.blocker_id not in blockers:
            continue  # the blocker is held by another transaction: the next sweep
        if row.blocker_id in first:
            break  # the rest waits for the next round, so everything fires in due order
        first[row.blocker_id] = row

    stale: list[int] = []
    one_by_one: list[int] = []
    chosen: list[tuple[Row, Any, Workflow, str]] = []
    for row in first.values():
        blocker = blockers[row.blocker_id]
        if blocker.state != row.payload.get("state"):
            stale.append(row.id)
            continue
        workflow = ctx.workflows[blocker.workflow]
        action = str(row.payload.get("action", ""))
        if escalates_nowhere(workflow.definition, action, blocker):
            stale.append(row.id)  # as the gate refuses it one by one
            continue
        if set_safe(workflow, action, blocker.state):
            chosen.append((row, blocker, workflow, action))
            continue
        # Through the gate on its own, in due order: next if first, else in the next round.
        if not chosen:
            one_by_one.append(row.id)
        break

    world = World(session, bulk=True)
    if chosen:
        world.preload([b for _, b, _, _ in chosen])
    event_now = ctx.clock.now()
    after_of: dict[tuple[str, str, str], str] = {}
    steps: list[engine.Step] = []
    for row, blocker, workflow, action in chosen:
        key = (workflow.name, blocker.state, action)
        payload = {"timer": row.kind, "step": row.step}
        if key not in after_of:
            after_of[key] = workflow.fire(blocker.state, action, payload)
        steps.append(
            engine.perform(
                world,
                ctx,
                workflow,
                blocker,
                action,
                engine.SYSTEM_TIMER,
                payload,
                event_now,
                timer=row,
                after=after_of[key],
            )
        )
    fired_ids = [row.id for row, _, _, _ in chosen]
    moved = [s.blocker.id for s in steps if s.event["state_before"] != s.event["state_after"]]
    if moved:  # before this batch's own messages are written
        drop_unsent(session, unsent_reminders(session, moved), ctx.lock_rows)
    _set_status(session, fired_ids, status="fired", fired_at=now)
    _set_status(session, stale, status="cancelled")
    _write(session, ctx, world, steps)
    return len(fired_ids), len(fired_ids) + len(stale), one_by_one


def _write(session: Session, ctx: EngineContext, world: World, steps: list[engine.Step]) -> None:
    if not steps:
        return
    insert_rows(session, EVENTS, [s.event for s in steps])
    update_rows(
        session,
        BLOCKERS,
        "id",
        [
            {
                "id": b.id,
                "state": b.state,
                "version": b.version,
                "updated_at": b.updated_at,
                "closed_at": b.closed_at,
                "escalation_level": b.escalation_level,
                "last_seq": b.last_seq,
                "last_hash": b.last_hash,
            }
            for b in (s.blocker for s in steps)
        ],
    )
    cancel_all = [s.blocker.id for s in steps if s.cancel is engine.ALL]
    by_kinds: dict[frozenset[str], list[int]] = defaultdict(list)
    for s in steps:
        if s.cancel and s.cancel is not engine.ALL:
            by_kinds[s.cancel].append(s.blocker.id)
    if cancel_all:
        _cancel(session, ctx, cancel_all)
    for kinds, blocker_ids in by_kinds.items():
        _cancel(session, ctx, blocker_ids, kinds)
    insert_rows(session, TIMERS, [t for s in steps for t in s.timers])
    world.insert_collected()  # escalations and chat messages, written by the effects
    if world.has_subscriptions():
        ids = _event_ids(session, steps)
        for step in steps:
            engine.enqueue_step_webhooks(world, step, ids[(step.blocker.id, step.event["seq"])])
        world.insert_collected()


def _event_ids(session: Session, steps: list[engine.Step]) -> dict[tuple[int, int], int]:
    """The ids the database gave the batch's events (subscribers receive them)."""
    low = min(s.event["seq"] for s in steps)
    query = select(EVENTS.c.blocker_id, EVENTS.c.seq, EVENTS.c.id).where(
        among(session, EVENTS.c.blocker_id, [s.blocker.id for s in steps]), EVENTS.c.seq >= low
    )
    return {(b, q): i for b, q, i in session.execute(query)}


def _cancel(
    session: Session,
    ctx: EngineContext,
    blocker_ids: list[int],
    kinds: frozenset[str] | None = None,
) -> None:
    """Cancel the blockers' pending timers, except those another sweeper has claimed.

    Waiting for another sweeper's claim could deadlock (it may be waiting for one of ours).
    A timer left pending this way is not fired wrongly: the sweeper holding it cannot lock
    the blocker (this transaction has it) and leaves it; whoever claims it next re-checks
    the blocker's state under the blocker's lock, finds it moved on, and cancels it; and
    any action through the gate before then cancels it too (`engine.apply` waits for it).
    """
    pending = select(TIMERS.c.id).where(
        among(session, TIMERS.c.blocker_id, blocker_ids), TIMERS.c.status == "pending"
    )
    if kinds is not None:
        pending = pending.where(TIMERS.c.kind.in_(sorted(kinds)))
    if ctx.lock_rows:
        pending = pending.with_for_update(skip_locked=True)
    session.execute(
        update(TIMERS)
        .where(among_selected(session, TIMERS.c.id, pending))
        .values(status="cancelled")
    )


def _set_status(session: Session, timer_ids: list[int], **values: Any) -> None:
    if timer_ids:
        session.execute(
            update(TIMERS).where(among(session, TIMERS.c.id, timer_ids)).values(**values)
        )
