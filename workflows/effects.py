"""The effects a definition may name on an action, each a small function of one step.

Effects change the blocker row and related rows inside the engine's transaction; the
engine writes the event, timers and notifications afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, select

from service.models import Blocker, Escalation, Officer, Unit
from workflows.calendar import WorkingDayCalendar, add_months
from workflows.context import EngineContext
from workflows.definition import ActionSpec, Workflow
from workflows.errors import InvalidPayload, NotAllowed
from workflows.outbox import enqueue_for_unit, message_context
from workflows.world import World

# The furthest a deadline may lie ahead, however it is given (about a year and a half).
MAX_WORKING_DAYS = 400


@dataclass
class Run:
    session: Session
    ctx: EngineContext
    workflow: Workflow
    blocker: Blocker
    actor: Any
    payload: dict[str, Any]
    now: datetime
    cal: WorkingDayCalendar
    spec: ActionSpec
    timer: Any = None
    world: World | None = None
    recorded: dict[str, Any] = field(default_factory=dict)
    deadline_changed: bool = False
    escalated_to: Unit | None = None
    # The state the action moves to (effects run before the blocker changes state).
    after: str | None = None

    def __post_init__(self) -> None:
        if self.world is None:
            self.world = World(self.session)


def _invalid(detail: str, name: str) -> Exception:
    return InvalidPayload(detail, field=name)


def resolve_deadline(run: Run, spec: Any) -> tuple[date, datetime]:
    """`{"working_days": N}` or `{"date": "YYYY-MM-DD"}` (or the definition's default)."""
    today = run.cal.local_date(run.now)
    if spec is None:
        default = run.workflow.definition.default_deadline.get(run.blocker.complexity)
        if default is None:
            raise _invalid("deadline: required for this workflow.", "deadline")
        spec = default.model_dump(exclude_none=True)
        # Recorded so that a later change of the holiday schedule can recount it.
        run.recorded["deadline_spec"] = spec
    if "working_days" in spec and spec["working_days"] is not None:
        n = int(spec["working_days"])
        if n < 1 or n > MAX_WORKING_DAYS:
            raise _invalid(
                f"deadline.working_days: give between 1 and {MAX_WORKING_DAYS} working days.",
                "deadline",
            )
        day = run.cal.add_working_days(today, n)
    elif "months" in spec:
        day = run.cal.next_working_day(add_months(today, int(spec["months"])), include_self=True)
    elif spec.get("date"):
        day = spec["date"] if isinstance(spec["date"], date) else date.fromisoformat(spec["date"])
        if day < today:
            raise _invalid(f"deadline.date: {day} is already past (today is {today}).", "deadline")
        latest = run.cal.add_working_days(today, MAX_WORKING_DAYS)
        if day > latest:
            raise _invalid(
                f"deadline.date: {day} is more than {MAX_WORKING_DAYS} working days ahead; "
                f"the latest allowed is {latest}.",
                "deadline",
            )
    else:
        raise _invalid("deadline: give working_days or date.", "deadline")
    return day, run.cal.end_of_day(day)


def calendar_warnings(cal: WorkingDayCalendar, today: date, day: date) -> list[str]:
    """What an official should double-check about a deadline on `day`, set on `today`."""
    missing = cal.years_without_official_data(today, day)
    warnings = [
        f"{year} 年尚未载入官方节假日安排，截止日期按周一至周五计算（weekends-only）。"
        for year in missing
    ]
    if not cal.is_working_day(day):  # a date given as such: kept, but worth a second look
        warnings.append(f"截止日期 {day.isoformat()} 不是工作日（周末或法定节假日），请确认。")
    return warnings


def _set_deadline(run: Run, spec: Any, at_least: tuple[date, datetime] | None = None) -> None:
    """The deadline `spec` gives; with `at_least`, never earlier than that one."""
    day, due = resolve_deadline(run, spec)
    if at_least is not None and at_least[0] > day:
        day, due = at_least
        run.recorded["deadline_kept"] = True
    blocker = run.blocker
    blocker.deadline, blocker.due_at = day, due
    blocker.warnings = calendar_warnings(run.cal, run.cal.local_date(run.now), day)
    run.recorded["deadline_date"] = day.isoformat()
    run.recorded["due_at"] = due.astimezone(run.cal.tz).isoformat()  # shown in local time
    run.deadline_changed = True


def set_assignment(run: Run) -> None:
    session, p = run.session, run.payload
    unit = session.exec(select(Unit).where(Unit.code == p["unit"])).first()
    if unit is None:
        raise _invalid(f"unit: there is no unit with code '{p['unit']}'.", "unit")
    if p.get("officer_id") is not None:
        officer = session.get(Officer, p["officer_id"])
        if officer is None or officer.unit_id != unit.id:
            raise _invalid(
                f"officer_id: officer {p['officer_id']} is not in unit '{unit.code}'.", "officer_id"
            )
        if not officer.active:
            raise _invalid(
                f"officer_id: officer {officer.id} ({officer.name}) has left the post "
                "(inactive); choose another officer.",
                "officer_id",
            )
    assisting = []
    for code in p.get("assisting_units") or []:
        other = session.exec(select(Unit).where(Unit.code == code)).first()
        if other is None:
            raise _invalid(
                f"assisting_units: there is no unit with code '{code}'.", "assisting_units"
            )
        if other.id == unit.id:
            raise _invalid(
                f"assisting_units: '{code}' is the responsible unit; a unit does not assist "
                "itself.",
                "assisting_units",
            )
        if other.id not in assisting:  # named twice: it assists once
            assisting.append(other.id)
    if p.get("complexity"):
        run.blocker.complexity = p["complexity"]
    run.blocker.unit_id = unit.id
    run.blocker.officer_id = p.get("officer_id")
    run.blocker.assisting_unit_ids = assisting
    _set_deadline(run, p.get("deadline"))


def start_at_authority_level(run: Run) -> None:
    """A blocker that only the city (or province) can solve starts at level 1 (or the top):
    one entry, in that level's queue; the levels below are not told of it as escalated."""
    level = {"city": 1, "province": run.workflow.definition.top_level}.get(
        run.blocker.authority_level, 0
    )
    if run.blocker.escalation_level < level:
        escalate_one(run, "authority", to_level=level)


def new_deadline(run: Run) -> None:
    """A returned blocker's deadline: the one given, else 5 working days from now, but
    never earlier than the deadline it had (a return does not cut the unit's time)."""
    given = run.payload.get("deadline")
    spec = given or {"working_days": 5}
    run.recorded["deadline_spec"] = spec
    previous = run.blocker.deadline, run.blocker.due_at
    _set_deadline(run, spec, None if given or previous[0] is None else previous)


def count_return(run: Run) -> None:
    run.blocker.return_count += 1
    run.blocker.failed_verifications += 1


def escalate_on_repeated_failure(run: Run) -> None:
    needed = run.workflow.definition.escalation.failed_verifications_to_escalate
    if run.blocker.failed_verifications >= needed:
        escalate_one(run, "failed_verification")


def close_escalations(run: Run) -> None:
    run.session.execute(
        update(Escalation)
        .where(
            Escalation.blocker_id == run.blocker.id, Escalation.status.in_(("open", "acknowledged"))
        )
        .values(status="closed")
        .execution_options(synchronize_session=False)
    )


def escalates_nowhere(definition: Any, action: str, blocker: Any) -> bool:
    """An action that only escalates (no state change: `request_escalation`, the `climb`
    timer) has nothing to do at the top of the ladder: refused (409), or its timer cancelled
    without an event. One that also moves the state (`deadline_passed`) still applies."""
    spec = definition.actions.get(action)
    return (
        spec is not None
        and _escalates_only(spec)
        and blocker.escalation_level >= definition.top_level
    )


def _escalates_only(spec: ActionSpec) -> bool:
    return "escalate" in spec.effects and spec.to is None and not spec.branches


def escalate(run: Run) -> None:
    top = run.workflow.definition.top_level
    if _escalates_only(run.spec) and run.blocker.escalation_level >= top:
        from workflows.engine import allowed_actions  # the engine imports this module

        raise NotAllowed(
            f"The blocker is already at the top of the ladder (level {top}); "
            "there is no level above to ask.",
            allowed_actions=allowed_actions(run.session, run.ctx, run.blocker, run.actor),
            state=run.blocker.state,
        )
    escalate_one(run, run.spec.escalation_reason or "requested")


def remind_then_escalate(run: Run) -> None:
    step = int(run.timer.payload.get("n", 1)) if run.timer is not None else 1
    if run.spec.escalate_on_step is not None and step >= run.spec.escalate_on_step:
        escalate_one(run, run.spec.escalation_reason or "unacknowledged")


def taskforce_for(world: World, blocker: Any) -> Unit | None:
    home = world.home(blocker)
    return world.general_taskforce(home) if home else None


def escalate_one(run: Run, reason: str, to_level: int | None = None) -> None:
    """Move the blocker up one rung (or straight to `to_level`); a step that was taken
    already is never taken twice."""
    blocker, definition, world = run.blocker, run.workflow.definition, run.world
    assert world is not None
    level = to_level if to_level is not None else blocker.escalation_level + 1
    step = f"level-{level}"
    if level > definition.top_level:
        if not blocker.return_count:
            run.recorded.setdefault("escalation", "already at the top of the ladder")
            return
        # Returned after verification: its entries closed when it was reported resolved. Stuck
        # again at the top, it enters the top's queue again, once for each return, unless it
        # is there already (a failed verification put it there).
        level, step = (
            definition.top_level,
            f"level-{definition.top_level}.return-{blocker.return_count}",
        )
        if world.open_at(blocker.id, level):
            run.recorded.setdefault("escalation", "already in the top level's queue")
            return
    if world.escalated(blocker.id, step):
        blocker.escalation_level = level
        return
    home = world.home(blocker)
    assert home is not None
    target = world.receiver(definition, level, home, blocker.category)
    world.add(
        Escalation,
        {
            "blocker_id": blocker.id,
            "level": level,
            "reason": reason,
            "detail": str(run.payload.get("reason") or ""),
            "step": step,
            "status": "open",
            "from_unit_id": blocker.unit_id,
            "target_unit_id": target.id,
            "created_at": run.now,
        },
    )
    blocker.escalation_level = level
    run.escalated_to = target
    run.recorded.setdefault("escalations", []).append(
        {"level": level, "reason": reason, "to": target.code}
    )
    urgent = run.timer is not None and run.timer.urgent
    not_before = (
        run.now
        if urgent
        else run.cal.next_office_open(run.now, run.ctx.office_open, run.ctx.office_close)
    )
    rung = definition.rung(level)
    context = message_context(
        world,
        blocker,
        run.cal,
        not_before,
        state=run.after or blocker.state,  # what it will be: returned, not still resolved
        reason=reason,
        level=level,
        level_label=rung.label if rung else str(level),
    )
    enqueue_for_unit(
        world,
        blocker=blocker,
        unit=target,
        template="escalated",
        event_type="blocker.escalated",
        context=context,
        not_before=not_before,
        urgent=urgent,
        now=run.now,
    )


def move_deadline(run: Run) -> None:
    """The holiday schedule changed: recount the same working days from the same start."""
    day = date.fromisoformat(run.payload["deadline"])
    run.blocker.deadline, run.blocker.due_at = day, run.cal.end_of_day(day)
    # The year just loaded no longer falls back to weekends only.
    run.blocker.warnings = calendar_warnings(run.cal, run.cal.local_date(run.now), day)
    run.recorded["previous_deadline"] = run.payload.get("previous_deadline")
    run.deadline_changed = True


REGISTRY: dict[str, Callable[[Run], None]] = {
    "set_assignment": set_assignment,
    "start_at_authority_level": start_at_authority_level,
    "restart_timers": lambda run: None,  # the engine restarts the kinds listed under `restart`
    "close_escalations": close_escalations,
    "count_return": count_return,
    "new_deadline": new_deadline,
    "escalate_on_repeated_failure": escalate_on_repeated_failure,
    "escalate": escalate,
    "remind_then_escalate": remind_then_escalate,
    "move_deadline": move_deadline,
}
