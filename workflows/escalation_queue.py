"""Working the escalation queue: acknowledge and handle, each also a blocker event (an
entry about a unit ranked last has no blocker: only the entry records who did what)."""

from __future__ import annotations

from sqlmodel import Session

from service.models import Blocker, Escalation, Event
from workflows.audit import append_event
from workflows.context import EngineContext
from workflows.engine import Actor, event_body, load_blocker
from workflows.errors import NotAllowed
from workflows.outbox import blocker_snapshot, enqueue_webhooks, event_name
from workflows.world import World

NEXT = {"acknowledge": ("open",), "handle": ("open", "acknowledged")}


def record_queue_action(
    session: Session,
    ctx: EngineContext,
    entry: Escalation,
    kind: str,
    actor: Actor,
    note: str | None,
) -> None:
    # Lock the blocker, then the entry (the order the gate uses when it closes entries),
    # and decide on the entry as it is now: two concurrent calls must not both succeed.
    blocker = None
    if entry.blocker_id is not None:
        blocker = load_blocker(session, ctx, entry.blocker_id, lock=True)
    session.refresh(entry, with_for_update=True if ctx.lock_rows else None)
    if entry.status not in NEXT[kind]:
        allowed = [k for k, sources in NEXT.items() if entry.status in sources]
        raise NotAllowed(
            f"This escalation is {entry.status}; it cannot be {kind}d.", allowed_actions=allowed
        )
    now = ctx.clock.now()
    if kind == "acknowledge":
        entry.status, entry.acknowledged_at, entry.acknowledged_by = "acknowledged", now, actor.name
    else:
        entry.status, entry.handled_at, entry.handled_by = "handled", now, actor.name
    entry.note = note or entry.note
    if blocker is None:
        session.flush()
        return
    blocker.version += 1
    blocker.updated_at = now
    event = append_event(
        session,
        blocker,
        at=now,
        actor=actor.name,
        api_key_id=actor.key_id,
        officer_id=actor.officer_id,
        action=f"escalation_{kind}",
        state_before=blocker.state,
        state_after=blocker.state,
        payload={"escalation_id": entry.id, "level": entry.level, "note": note},
    )
    session.flush()  # the event's id is part of what subscribers receive
    _tell_subscribers(session, ctx, blocker, event)


def _tell_subscribers(session: Session, ctx: EngineContext, blocker: Blocker, event: Event) -> None:
    """Signed webhooks about the queue action, like those about any other timeline event."""
    world = World(session)
    if not world.has_subscriptions():
        return
    cal = ctx.calendars.get(session)
    local = event.at.astimezone(cal.tz).isoformat()
    fields = {name: getattr(event, name) for name in ("actor", "state_before", "state_after")}
    fields |= {"payload": event.payload, "hash": event.hash}
    body = {
        "blocker_id": blocker.id,
        "action": event.action,
        **blocker_snapshot(world, blocker, cal, event.at),
        "seq": event.seq,
        "at": local,
        "event": event_body(event.id, event.seq, event.action, fields, local),
    }
    enqueue_webhooks(
        world,
        blocker=blocker,
        event_type=event_name(event.action),
        body=body,
        now=event.at,
        aliases=(f"blocker.{event.action}",),
    )
