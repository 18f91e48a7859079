"""Working the escalation queue: acknowledge and handle, each also a blocker event (an
entry about a unit ranked last has no blocker: only the entry records who did what)."""

from __future__ import annotations

from sqlmodel import Session

from service.models import Escalation
from workflows.audit import append_event
from workflows.context import EngineContext
from workflows.engine import Actor, load_blocker
from workflows.errors import NotAllowed

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
    append_event(
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
    session.flush()
