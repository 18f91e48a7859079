"""The one gate for every change to a blocker.

``apply(session, ctx, blocker_id, action, actor, payload)`` runs inside the caller's
transaction: it loads the row (locked on PostgreSQL, version-checked everywhere),
checks the action against the state and the actor, fires the transition, runs the
effects named in the definition, writes the hash-chained event, replaces the timers
that no longer apply and writes outbox rows. It never commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from service.models import Blocker, Escalation, Event, Notification, Project, Timer, Unit
from workflows import effects
from workflows.audit import append_event, next_link
from workflows.calendar import WorkingDayCalendar
from workflows.context import EngineContext
from workflows.definition import Workflow
from workflows.errors import (
    EngineError,
    Forbidden,
    InvalidPayload,
    NotAllowed,
    NotFound,
    StaleVersion,
)
from workflows.outbox import (
    UNTRUE_WITHOUT_MOVING,
    blocker_snapshot,
    drop_unsent,
    enqueue_for_unit,
    enqueue_webhooks,
    event_name,
    message_context,
    unsent_reminders,
    untrue_kinds,
)
from workflows.timers import cancel_pending, make_timer, plan_state_timers
from workflows.world import World


@dataclass(frozen=True)
class Actor:
    """Who performs an action: an API key (maybe with an officer), the admin, or a timer."""

    name: str
    key_id: int | None = None
    officer_id: int | None = None
    unit_id: int | None = None
    unit_path: str | None = None
    scope_path: str | None = None
    is_admin: bool = False
    is_taskforce: bool = False
    is_system: bool = False


SYSTEM_TIMER = Actor(name="system:timer", is_system=True)

__all__ = [
    "Actor",
    "EngineError",
    "Forbidden",
    "InvalidPayload",
    "NotAllowed",
    "NotFound",
    "SYSTEM_TIMER",
    "StaleVersion",
    "allowed_actions",
    "apply",
    "create_blocker",
]


def load_blocker(session: Session, ctx: EngineContext, blocker_id: int, *, lock: bool) -> Blocker:
    query = (
        select(Blocker).where(Blocker.id == blocker_id).execution_options(populate_existing=True)
    )
    if lock and ctx.lock_rows:
        query = query.with_for_update()
    blocker = session.exec(query).first()
    if blocker is None:
        raise NotFound(f"There is no blocker {blocker_id}.")
    return blocker


def roles_of(session: Session, actor: Actor, blocker: Blocker) -> set[str]:
    if actor.is_system:
        return {"system"}
    roles: set[str] = set()
    unit = session.get(Unit, blocker.unit_id) if blocker.unit_id else None
    project = session.get(Project, blocker.project_id)
    county = session.get(Unit, project.county_unit_id) if project else None
    home = unit or county
    if actor.is_taskforce and home and actor.scope_path and home.path.startswith(actor.scope_path):
        roles.add("taskforce")
    if unit and actor.unit_path and unit.path.startswith(actor.unit_path):
        roles.add("responsible_unit")
    if actor.key_id is not None and blocker.created_by_key_id == actor.key_id:
        roles.add("creator")
    if actor.unit_id is not None:
        target = session.exec(
            select(Escalation.id).where(
                Escalation.blocker_id == blocker.id,
                Escalation.target_unit_id == actor.unit_id,
                Escalation.status.in_(("open", "acknowledged")),
            )
        ).first()
        if target is not None:
            roles.add("escalation_target")
    return roles


def allowed_actions(
    session: Session, ctx: EngineContext, blocker: Blocker, actor: Actor | None = None
) -> list[str]:
    workflow = ctx.workflows[blocker.workflow]
    names = [
        n
        for n in workflow.allowed_actions(blocker.state)
        if not effects.escalates_nowhere(workflow.definition, n, blocker)
    ]
    if actor is None or actor.is_admin:
        return names
    roles = roles_of(session, actor, blocker)
    return [n for n in names if roles & set(workflow.definition.actions[n].actors)]


def create_blocker(
    session: Session,
    ctx: EngineContext,
    actor: Actor,
    fields: dict[str, Any],
    workflow: str | None = None,
) -> Blocker:
    """A new blocker in the definition's initial state, with the first link of its chain."""
    name = workflow or ctx.default_workflow
    if name not in ctx.workflows:
        raise InvalidPayload(
            f"workflow: there is no workflow definition '{name}'.", field="workflow"
        )
    now = ctx.clock.now()
    blocker = Blocker(
        **fields,
        workflow=name,
        state=ctx.workflows[name].definition.initial,
        created_by_key_id=actor.key_id,
        created_at=now,
        updated_at=now,
    )
    session.add(blocker)
    session.flush()
    event = append_event(
        session,
        blocker,
        at=now,
        actor=actor.name,
        api_key_id=actor.key_id,
        officer_id=actor.officer_id,
        action="create",
        state_before=None,
        state_after=blocker.state,
        payload={k: v for k, v in fields.items() if v is not None and k != "project_id"},
    )
    world = World(session)
    if world.has_subscriptions():
        session.flush()  # the event's id, for the delivery
        cal = ctx.calendars.get(session)
        local = now.astimezone(cal.tz).isoformat()
        enqueue_webhooks(
            world,
            blocker=blocker,
            event_type="blocker.created",
            body={
                "blocker_id": blocker.id,
                "action": "create",
                **blocker_snapshot(world, blocker, cal, now),
                "seq": event.seq,
                "at": local,
                "event": event_body(event.id, event.seq, "create", vars(event), local),
            },
            now=now,
        )
    session.flush()
    return blocker


def apply(
    session: Session,
    ctx: EngineContext,
    blocker_id: int,
    action: str,
    actor: Actor,
    payload: dict[str, Any] | None = None,
    *,
    expected_version: int | None = None,
    timer: Timer | None = None,
) -> Blocker:
    payload = dict(payload or {})
    blocker = load_blocker(session, ctx, blocker_id, lock=True)
    if expected_version is not None and blocker.version != expected_version:
        raise StaleVersion(
            f"The blocker is at version {blocker.version}, not {expected_version}; "
            "read it again and retry.",
            current_version=blocker.version,
        )
    workflow = ctx.workflows[blocker.workflow]
    spec = workflow.definition.actions.get(action)
    if (
        spec is None
        or blocker.state not in spec.from_
        or (spec.system_only and not actor.is_system)
    ):
        raise NotAllowed(
            f"'{action}' is not allowed while the blocker is {blocker.state}.",
            allowed_actions=allowed_actions(session, ctx, blocker, actor),
            state=blocker.state,
        )
    if not actor.is_admin and not (roles_of(session, actor, blocker) & set(spec.actors)):
        raise Forbidden(
            f"This key may not '{action}' this blocker (allowed: {', '.join(spec.actors)})."
        )
    for name in spec.requires:
        if payload.get(name) is None or payload.get(name) == "":
            raise InvalidPayload(f"{name}: required for '{action}'.", field=name)

    now = ctx.clock.now()
    # Reminders not sent yet, taken before the action writes its own messages; only for an
    # action that can make one untrue (one that moves the blocker, or feedback).
    moves = spec.to not in (None, blocker.state) or bool(spec.branches)
    held = (
        session.exec(
            unsent_reminders(session, [blocker.id], Notification.id, Notification.kind)
        ).all()
        if moves or action in UNTRUE_WITHOUT_MOVING
        else []
    )
    state_before = blocker.state
    world = World(session)
    step = perform(world, ctx, workflow, blocker, action, actor, payload, now, timer=timer)
    untrue = untrue_kinds(action, state_before, blocker.state)
    if untrue_ids := [i for i, kind in held if kind in untrue]:
        query = unsent_reminders(session, [blocker.id]).where(Notification.id.in_(untrue_ids))
        drop_unsent(session, query, ctx.lock_rows)
    event = Event(**step.event)
    session.add(event)
    if step.cancel:
        cancel_pending(session, blocker.id, None if step.cancel is ALL else set(step.cancel))
    for row in step.timers:
        session.add(Timer(**row))
    session.flush()  # the event's id is part of what subscribers receive
    enqueue_step_webhooks(world, step, event.id)
    session.flush()
    return blocker


ALL: frozenset[str] = frozenset({"*"})


@dataclass
class Step:
    """What one action did to one blocker, ready to be written (alone or with a batch)."""

    blocker: Any
    action: str
    payload: dict[str, Any]
    event: dict[str, Any]
    cal: WorkingDayCalendar
    escalated: bool
    # Pending timers to cancel: ALL, some kinds, or none (an empty set).
    cancel: frozenset[str] = frozenset()
    timers: list[dict[str, Any]] = field(default_factory=list)
    snapshot: dict[str, Any] = field(default_factory=dict)


def perform(
    world: World,
    ctx: EngineContext,
    workflow: Workflow,
    blocker: Any,
    action: str,
    actor: Actor,
    payload: dict[str, Any],
    now: datetime,
    *,
    timer: Any = None,
    after: str | None = None,
) -> Step:
    """Run a checked action on a loaded blocker: effects, state, event, timers, messages.

    Changes the blocker object and adds rows through `world`; the event and timer rows are
    returned for the caller to write (`apply` one at a time, `workflows.batch` set-wise).
    """
    spec = workflow.definition.actions[action]
    cal = ctx.calendars.get(world.session)
    branch = workflow.branch_for(action, payload)
    before = blocker.state
    if after is None:
        after = workflow.fire(before, action, payload)
    run = effects.Run(
        session=world.session,
        ctx=ctx,
        workflow=workflow,
        blocker=blocker,
        actor=actor,
        payload=payload,
        now=now,
        cal=cal,
        spec=spec,
        timer=timer,
        world=world,
        after=after,
    )
    for name in list(spec.effects) + list(branch.effects):
        effects.REGISTRY[name](run)

    blocker.state = after
    blocker.version += 1
    blocker.updated_at = now
    if after != before and workflow.definition.states[after].final:
        blocker.closed_at = now
    event_payload = {k: v for k, v in payload.items() if v is not None}
    event_payload.update(run.recorded)
    event = next_link(
        blocker,
        at=now,
        actor=actor.name,
        api_key_id=actor.key_id,
        officer_id=actor.officer_id,
        action=action,
        state_before=before,
        state_after=after,
        payload=event_payload,
    )
    step = Step(
        blocker=blocker,
        action=action,
        payload=payload,
        event=event,
        cal=cal,
        escalated=run.escalated_to is not None,
        # For the webhooks only (the sweep's hot path when nobody subscribed).
        snapshot=blocker_snapshot(world, blocker, cal, now) if world.has_subscriptions() else {},
    )
    _plan_timers(step, workflow, before, after, now, spec.restart, timer, run)
    _notify_units(world, ctx, blocker, action, list(spec.notify) + list(branch.notify), run, now)
    return step


def _plan_timers(step: Step, workflow: Workflow, before, after, now, restart, timer, run) -> None:
    definition, blocker, cal = workflow.definition, step.blocker, step.cal
    seq = step.event["seq"]

    def plan(kinds: set[str] | None) -> None:
        planned = plan_state_timers(definition, cal, blocker, after, now, seq, now, kinds)
        step.timers.extend(planned)

    if after != before:
        step.cancel = ALL
        plan(None)
        return
    kinds: set[str] = set()
    if run.deadline_changed:
        kinds |= {t.kind for t in definition.states[after].timers if t.anchor == "deadline"}
    kinds |= set(restart)
    if kinds:
        step.cancel = frozenset(kinds)
        plan(kinds)
    if timer is not None:
        spec = next((s for s in definition.states[after].timers if s.kind == timer.kind), None)
        n = int(timer.payload.get("n", 1))
        if (
            spec is not None
            and spec.repeat is not None
            and (spec.repeat.max is None or n < spec.repeat.max)
        ):
            base = datetime.fromisoformat(timer.payload["base"])
            nxt = make_timer(
                spec, cal, blocker, after, base, int(timer.payload["enter_seq"]), n + 1
            )
            if nxt is not None:
                step.timers.append(nxt)


def _notify_units(world: World, ctx, blocker, action, notifies, run, now) -> None:
    cal = run.cal
    seq = blocker.last_seq
    for notify in notifies:
        if notify.to == "responsible_unit":
            target = world.unit(blocker.unit_id)
        elif notify.to == "escalation_target":
            target = run.escalated_to
        else:
            target = effects.taskforce_for(world, blocker)
        if target is None:
            continue
        urgent = notify.urgent or (run.timer is not None and run.timer.urgent)
        not_before = now if urgent else cal.next_office_open(now, ctx.office_open, ctx.office_close)
        rung = run.workflow.definition.rung(blocker.escalation_level)
        context = message_context(
            world,
            blocker,
            cal,
            not_before,
            action=action,
            seq=seq,
            level_label=rung.label if rung else "",
            escalated_now=run.escalated_to is not None,  # this very step escalated it
        )
        enqueue_for_unit(
            world,
            blocker=blocker,
            unit=target,
            template=notify.template,
            event_type=event_name(action, run.payload),
            context=context,
            not_before=not_before,
            urgent=urgent,
            now=now,
        )


def event_body(event_id: int | None, seq: int, action: str, event: dict, local: str) -> dict:
    """The timeline entry inside a webhook: `event` is the row's fields."""
    return {
        "id": event_id,
        "seq": seq,
        "action": action,
        "actor": event["actor"],
        "state_before": event["state_before"],
        "state_after": event["state_after"],
        "at": local,
        "payload": event["payload"],
        "hash": event["hash"],
    }


def enqueue_step_webhooks(world: World, step: Step, event_id: int) -> None:
    """Signed webhooks about the step, once its event has an id."""
    event, action = step.event, step.action
    local = event["at"].astimezone(step.cal.tz).isoformat()
    body = {
        "blocker_id": step.blocker.id,
        "action": action,
        **step.snapshot,
        "seq": event["seq"],
        "at": local,
        "event": event_body(event_id, event["seq"], action, event, local),
    }
    now = event["at"]
    enqueue_webhooks(
        world,
        blocker=step.blocker,
        event_type=event_name(action, step.payload),
        body=body,
        now=now,
        aliases=(f"blocker.{action}",),
    )
    if step.escalated:
        enqueue_webhooks(
            world, blocker=step.blocker, event_type="blocker.escalated", body=body, now=now
        )
