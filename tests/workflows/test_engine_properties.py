"""Random action sequences straight against the engine keep its invariants, on both databases.

A Hypothesis state machine creates one blocker per example (either workflow, county or
city authority, the manual clock starting on any weekday at any hour from 09:30 to 23:30,
since evenings and weekends matter to timers) and then, step by step, applies random actions as random actors (the
admin, the responsible unit, the city taskforce, a stranger county) with random stale
versions and incomplete payloads, or moves the manual clock and sweeps the due timers.

Before every attempt the test predicts the engine's answer from the definition alone
(stale version → StaleVersion, wrong state or a timer-only action → NotAllowed, no role
→ Forbidden, a required field missing or an unknown unit → InvalidPayload, else the
transition the YAML names) and checks the engine agrees; a refused step must leave the
stored blocker, its events, timers and escalations exactly as they were.

After every step:

* the state is a state of the definition; version == last_seq == number of events;
* the events form a path through the definition (each action allowed from the state
  before it, landing where the YAML says) and `audit.verify_all` finds no broken chain;
* escalation entries are exactly levels 1..escalation_level, one per step;
* a final state has no pending timers, no open escalations and a closed_at;
* the pending timers are exactly the current state's timer kinds, one row each, by this
  rule (derived from `workflows/timers.py` and the engine's `_reschedule`):

  - a timer anchored on *entering* the state is pending until it has fired `limit` times
    since it was last planned — planned on entering the state, or re-planned by an action
    that lists the kind under `restart` — where `limit` is 1 without `repeat`,
    `repeat.max` with one, and unbounded with `repeat` but no `max`;
  - the *deadline* timer itself (working_days 0) is pending while there is a deadline and
    it has not fired in this state;
  - a *reminder anchored on the deadline* is pending iff there is a deadline and its due
    moment (computed from the current deadline) is still in the future: one already past
    when the state was entered is never planned, and one that falls due is swept, because
    the clock only moves in the sweep step and that step drains everything due.

* a sweep leaves nothing due pending; a timer is cancelled only when a later event made
  it moot (the state was left, its kind restarted, its deadline moved), never because its
  action failed; the steps of one repeating timer fall due at strictly increasing moments.

When a blocker reaches a final state the machine goes on with a new one (the clock runs
on), so most steps exercise open states and their timers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import update
from sqlmodel import select

from service.db import Database
from service.models import Blocker, Escalation, Event, Project, Timer, Unit
from workflows import engine
from workflows.audit import verify_all
from workflows.clock import ManualClock
from workflows.context import EngineContext
from workflows.definition import load_all
from workflows.effects import escalates_nowhere
from workflows.errors import EngineError, Forbidden, InvalidPayload, NotAllowed, StaleVersion
from workflows.sweep import sweep_once
from workflows.timers import due_at_for

START = datetime.fromisoformat("2026-03-02T09:30:00+08:00")
WORKFLOWS = load_all()
ACTION_NAMES = sorted({a for w in WORKFLOWS.values() for a in w.definition.actions}) + [
    "frobnicate"
]
ACTOR_KEYS = ("admin", "unit", "taskforce", "stranger")
ENDINGS = ("close", "withdraw")


def _unit(session, code, level, kind, parent=None, tags=()):
    unit = Unit(code=code, name=code, level=level, kind=kind, tags=list(tags))
    unit.parent_id = parent.id if parent else None
    session.add(unit)
    session.flush()
    unit.path = f"{parent.path if parent else '/'}{unit.id}/"
    session.flush()
    return unit


def _seed(db: Database) -> dict[str, engine.Actor]:
    """The city of tests/helpers.city() built with the ORM; returns the four actors."""
    with db.unit_of_work() as session:
        xx = _unit(session, "xx", "city", "government", tags=["city_government"])
        zb = _unit(session, "xx-zb", "city", "taskforce", xx, ["general_taskforce"])
        _unit(session, "xx-cwfsz", "city", "leader", xx, ["executive_vice_mayor"])
        _unit(session, "xx-fsz-land", "city", "leader", xx, ["sector:用地"])
        wy = _unit(session, "wy", "county", "government", xx)
        hj = _unit(session, "hj", "county", "government", xx)
        session.add(Project(code="P1", name="项目P1", category="省市重点", county_unit_id=wy.id))
        return {
            "admin": engine.Actor(name="admin", is_admin=True),
            "unit": engine.Actor(
                name="key:wy", unit_id=wy.id, unit_path=wy.path, scope_path=wy.path
            ),
            "taskforce": engine.Actor(
                name="key:xx-zb",
                unit_id=zb.id,
                unit_path=zb.path,
                scope_path=xx.path,
                is_taskforce=True,
            ),
            "stranger": engine.Actor(
                name="key:hj", unit_id=hj.id, unit_path=hj.path, scope_path=hj.path
            ),
        }


@dataclass(frozen=True)
class Snap:
    """Everything stored about one blocker that an action may change."""

    state: str
    version: int
    last_seq: int
    last_hash: str
    unit_id: int | None
    deadline: Any
    due_at: Any
    escalation_level: int
    closed_at: Any
    events: tuple  # (seq, action, before, after, actor, timer kind or None, payload)
    pending: tuple  # (id, kind, step, due_at, payload state, payload action)
    live_timers: tuple  # (kind, enter_seq, n, due_at) of pending and fired rows
    cancelled: tuple  # (kind, enter_seq) of cancelled rows
    escalations: tuple  # (level, step, status)


def _snap(db: Database, blocker_id: int) -> Snap:
    with db.unit_of_work(readonly=True) as session:
        b = session.get(Blocker, blocker_id)
        events = session.exec(
            select(Event).where(Event.blocker_id == blocker_id).order_by(Event.seq)
        )
        timers = list(
            session.exec(select(Timer).where(Timer.blocker_id == blocker_id).order_by(Timer.id))
        )
        escalations = session.exec(
            select(Escalation).where(Escalation.blocker_id == blocker_id).order_by(Escalation.id)
        )
        return Snap(
            state=b.state,
            version=b.version,
            last_seq=b.last_seq,
            last_hash=b.last_hash,
            unit_id=b.unit_id,
            deadline=b.deadline,
            due_at=b.due_at,
            escalation_level=b.escalation_level,
            closed_at=b.closed_at,
            events=tuple(
                (
                    e.seq,
                    e.action,
                    e.state_before,
                    e.state_after,
                    e.actor,
                    e.payload.get("timer") if e.actor == "system:timer" else None,
                    repr(sorted(e.payload.items())),
                )
                for e in events
            ),
            pending=tuple(
                (t.id, t.kind, t.step, t.due_at, t.payload["state"], t.payload["action"])
                for t in timers
                if t.status == "pending"
            ),
            live_timers=tuple(
                (t.kind, int(t.payload["enter_seq"]), int(t.payload["n"]), t.due_at)
                for t in timers
                if t.status != "cancelled"
            ),
            cancelled=tuple(
                (t.kind, int(t.payload["enter_seq"])) for t in timers if t.status == "cancelled"
            ),
            escalations=tuple((e.level, e.step, e.status) for e in escalations),
        )


def _drain(db: Database, ctx: EngineContext) -> int:
    """Sweep until nothing is due; returns how many timers fired."""
    total = 0
    for _ in range(500):
        fired, settled = sweep_once(db, ctx)
        if settled == 0:
            return total
        total += fired
    raise AssertionError("the sweep never ran dry")


@st.composite
def payloads(draw, workflow: str, action: str, complete: bool) -> dict[str, Any]:
    days = st.integers(1, 12).map(lambda n: {"working_days": n})
    if action == "assign":
        payload: dict[str, Any] = {"unit": "wy"}
        if workflow == "blocker" or draw(st.booleans()):
            payload["deadline"] = draw(days)
        if workflow == "w13710" and draw(st.booleans()):
            payload["complexity"] = draw(st.sampled_from(["ordinary", "complex"]))
    elif action in ("feedback", "report_resolved"):
        payload = {"note": "进展"}
    elif action == "verify":
        payload = {"satisfied": draw(st.booleans()), "note": "回访"}
        if not payload["satisfied"] and draw(st.booleans()):
            payload["deadline"] = draw(days)
    elif action in ("withdraw", "request_escalation"):
        payload = {"reason": "需协调"}
    else:
        payload = {}
    if not complete:
        spec = WORKFLOWS[workflow].definition.actions.get(action)
        faults = [f"drop:{name}" for name in (spec.requires if spec else [])]
        if action == "assign":
            faults.append("bad_unit")
        if faults:
            fault = draw(st.sampled_from(faults))
            if fault == "bad_unit":
                payload["unit"] = "nowhere"
            else:
                payload[fault.removeprefix("drop:")] = draw(st.sampled_from([None, ""]))
    return payload


def _targets(spec, before: str) -> set[str]:
    if spec.branches:
        return {b.to if b.to is not None else before for b in spec.branches}
    return {spec.to if spec.to is not None else before}


def test_random_action_sequences_keep_the_engine_invariants(db_url):
    db = Database(db_url)
    actors = _seed(db)

    class EngineMachine(RuleBasedStateMachine):
        @initialize(
            workflow=st.sampled_from(sorted(WORKFLOWS)),
            authority=st.sampled_from(["county", "city"]),
            category=st.sampled_from(["用地", "涉铁"]),
            # Any day of the week, 09:30 to 23:30: evenings and weekends matter to timers.
            days=st.integers(0, 6),
            hours=st.integers(0, 14),
        )
        def first_blocker(self, workflow, authority, category, days, hours):
            self.clock = ManualClock(START + timedelta(days=days, hours=hours))
            self.ctx = EngineContext(
                workflows=WORKFLOWS, clock=self.clock, lock_rows=db.is_postgres
            )
            self.start(workflow, authority, category)

        @precondition(lambda self: self.definition.states[self.state].final)
        @rule(
            workflow=st.sampled_from(sorted(WORKFLOWS)),
            authority=st.sampled_from(["county", "city"]),
            category=st.sampled_from(["用地", "涉铁"]),
        )
        def next_blocker(self, workflow, authority, category):
            """The loop ended: go on with a new blocker (the clock runs on)."""
            self.start(workflow, authority, category)

        def start(self, workflow, authority, category):
            self.workflow = WORKFLOWS[workflow]
            self.definition = self.workflow.definition
            with db.unit_of_work() as session:
                # Earlier examples' blockers keep rows; their timers must not fire into this one.
                session.execute(
                    update(Timer).where(Timer.status == "pending").values(status="cancelled")
                )
                project = session.exec(select(Project).where(Project.code == "P1")).one()
                blocker = engine.create_blocker(
                    session,
                    self.ctx,
                    actors["admin"],
                    {
                        "project_id": project.id,
                        "title": "用地手续办理滞后",
                        "category": category,
                        "authority_level": authority,
                    },
                    workflow,
                )
                self.blocker_id = blocker.id
                self.state = blocker.state

        # ------------------------------------------------------------------ prediction
        def roles(self, snap: Snap, actor_key: str) -> set[str]:
            if actor_key == "taskforce":
                return {"taskforce"}
            if actor_key == "unit" and snap.unit_id is not None:
                return {"responsible_unit"}
            return set()

        def allowed_for(self, snap: Snap, actor_key: str) -> list[str]:
            # At the top of the ladder an action that only asks for a level above (no
            # state of its own to move to) is not offered.
            top = snap.escalation_level >= self.definition.top_level
            names = [
                n
                for n in self.workflow.allowed_actions(snap.state)
                if not (top and self.definition.actions[n].to is None
                        and "escalate" in self.definition.actions[n].effects
                        and not self.definition.actions[n].branches)
            ]
            if actor_key == "admin":
                return names
            roles = self.roles(snap, actor_key)
            return [n for n in names if roles & set(self.definition.actions[n].actors)]

        def predict(self, snap, action, actor_key, payload, version) -> type[EngineError] | None:
            if version is not None and version != snap.version:
                return StaleVersion
            spec = self.definition.actions.get(action)
            if spec is None or snap.state not in spec.from_ or spec.system_only:
                return NotAllowed
            if actor_key != "admin" and not (self.roles(snap, actor_key) & set(spec.actors)):
                return Forbidden
            if any(payload.get(name) in (None, "") for name in spec.requires):
                return InvalidPayload
            if payload.get("unit") == "nowhere":
                return InvalidPayload
            if escalates_nowhere(self.definition, action, snap):
                return NotAllowed  # asked for a level above the top
            return None

        def target(self, state: str, action: str, payload: dict[str, Any]) -> str:
            branch = self.workflow.branch_for(action, payload)
            return branch.to if branch.to is not None else state

        # ------------------------------------------------------------------ steps
        def attempt(self, action, actor_key, payload, version) -> None:
            before = _snap(db, self.blocker_id)
            expected = self.predict(before, action, actor_key, payload, version)
            outcome: EngineError | None = None
            try:
                with db.unit_of_work() as session:
                    engine.apply(
                        session,
                        self.ctx,
                        self.blocker_id,
                        action,
                        actors[actor_key],
                        payload,
                        expected_version=version,
                    )
            except EngineError as exc:
                outcome = exc
            after = _snap(db, self.blocker_id)
            self.state = after.state
            if expected is None:
                assert outcome is None, f"{action} by {actor_key} was refused: {outcome!r}"
                target = self.target(before.state, action, payload)
                assert after.state == target
                assert after.version == before.version + 1
                assert after.events[:-1] == before.events
                seq, name, state_before, state_after, actor, _, _ = after.events[-1]
                assert (seq, name, state_before, state_after) == (
                    before.last_seq + 1,
                    action,
                    before.state,
                    target,
                )
                assert actor == actors[actor_key].name
                return
            assert type(outcome) is expected, (action, actor_key, payload, version, outcome)
            assert after == before, f"refused {action} ({expected.__name__}) changed the blocker"
            if expected is NotAllowed:
                assert outcome.extra["state"] == before.state
                assert outcome.extra["allowed_actions"] == self.allowed_for(before, actor_key)
            if expected is InvalidPayload:
                missing = [
                    n
                    for n in ("unit", "deadline", "note", "reason", "satisfied")
                    if n in payload and payload[n] in (None, "")
                ]
                assert outcome.extra["field"] == (missing[0] if missing else "unit")

        @rule(plausible=st.sampled_from([True, True, False]), data=st.data())
        def act(self, plausible, data):
            """Mostly a step the definition allows (by an actor with a role), else anything."""
            snap = _snap(db, self.blocker_id)
            if plausible and self.workflow.allowed_actions(snap.state):
                allowed = self.workflow.allowed_actions(snap.state)
                # Closing and withdrawing end the loop; keep them possible but rarer.
                names = [n for n in allowed if n not in ENDINGS] * 3 + [
                    n for n in allowed if n in ENDINGS
                ]
                action = data.draw(st.sampled_from(names), label="action")
                spec = self.definition.actions[action]
                keys = [
                    k for k in ACTOR_KEYS if k == "admin" or self.roles(snap, k) & set(spec.actors)
                ]
                actor_key = data.draw(st.sampled_from(keys), label="actor")
                version = data.draw(st.sampled_from([None, snap.version]), label="version")
                complete = True
            else:
                action = data.draw(st.sampled_from(ACTION_NAMES), label="action")
                actor_key = data.draw(st.sampled_from(ACTOR_KEYS), label="actor")
                shift = data.draw(st.sampled_from([None, 0, 0, -1, 1, 7]), label="shift")
                version = None if shift is None else snap.version + shift
                complete = data.draw(st.booleans(), label="complete")
            payload = data.draw(payloads(self.workflow.name, action, complete), label="payload")
            self.attempt(action, actor_key, payload, version)

        @precondition(lambda self: not self.definition.states[self.state].final)
        @rule(
            delta=st.one_of(
                st.integers(1, 16).map(lambda h: timedelta(hours=h)),
                st.integers(1, 12).map(lambda d: timedelta(days=d)),
            )
        )
        def advance_clock_and_sweep(self, delta):
            before = _snap(db, self.blocker_id)
            self.clock.set(self.clock.now() + delta)
            fired = _drain(db, self.ctx)
            after = _snap(db, self.blocker_id)
            self.state = after.state
            new = after.events[len(before.events) :]
            assert after.events[: len(before.events)] == before.events, "events were rewritten"
            assert len(new) == fired
            assert all(e[4] == "system:timer" and e[5] for e in new), new
            assert after.version == before.version + fired
            now = self.clock.now()
            assert all(t[3] > now for t in after.pending), "a due timer stayed pending"

        # ------------------------------------------------------------------ invariants
        @invariant()
        def state_version_and_events(self):
            snap = _snap(db, self.blocker_id)
            definition = self.definition
            assert snap.state in definition.states
            assert snap.version == snap.last_seq == len(snap.events)
            assert [e[0] for e in snap.events] == list(range(1, len(snap.events) + 1))
            first = snap.events[0]
            assert (first[1], first[2], first[3]) == ("create", None, definition.initial)
            state = definition.initial
            for _, action, before, after, actor, _, _ in snap.events[1:]:
                spec = definition.actions[action]
                assert before == state and before in spec.from_, (action, before)
                assert after in _targets(spec, before), (action, before, after)
                if spec.system_only:
                    assert actor == "system:timer"
                state = after
            assert state == snap.state

        @invariant()
        def no_broken_chain(self):
            with db.unit_of_work(readonly=True) as session:
                assert [str(b) for b in verify_all(session)] == []

        @invariant()
        def escalations_one_per_level(self):
            snap = _snap(db, self.blocker_id)
            # One entry per rung climbed; a returned blocker stuck again at the top enters the
            # top's queue again, once per return ("level-3.return-N").
            climbed = [e for e in snap.escalations if ".return-" not in e[1]]
            again = [e for e in snap.escalations if ".return-" in e[1]]
            assert sorted(e[0] for e in climbed) == list(range(1, snap.escalation_level + 1))
            assert all(e[0] == self.definition.top_level for e in again)
            assert len({e[1] for e in snap.escalations}) == len(snap.escalations)
            assert snap.escalation_level <= self.definition.top_level
            if self.definition.states[snap.state].final:
                assert snap.closed_at is not None and snap.pending == ()
                assert all(e[2] not in ("open", "acknowledged") for e in snap.escalations)

        @invariant()
        def pending_timers_match_the_definition(self):
            snap = _snap(db, self.blocker_id)
            now = self.clock.now()
            with db.unit_of_work(readonly=True) as session:
                cal = self.ctx.calendars.get(session)
            episode_start = max(
                i for i, e in enumerate(snap.events) if e[2] != e[3]
            )  # the event that entered the current state
            episode = snap.events[episode_start:]
            carrier = SimpleNamespace(deadline=snap.deadline, due_at=snap.due_at)
            expected: dict[str, str] = {}
            for spec in self.definition.states[snap.state].timers:
                if spec.anchor == "deadline":
                    if snap.deadline is None:
                        continue
                    if spec.working_days == 0 or spec.hours == 0:
                        if not any(e[5] == spec.kind for e in episode[1:]):
                            expected[spec.kind] = spec.action
                    elif due_at_for(spec, cal, carrier, now, 1) > now:
                        expected[spec.kind] = spec.action
                    continue
                planned = max(
                    (
                        i
                        for i, e in enumerate(episode)
                        if i == 0 or spec.kind in self.definition.actions[e[1]].restart
                    ),
                )
                fires = sum(1 for e in episode[planned + 1 :] if e[5] == spec.kind)
                limit = 1 if spec.repeat is None else spec.repeat.max
                if limit is None or fires < limit:
                    expected[spec.kind] = spec.action
            kinds = sorted(t[1] for t in snap.pending)
            for kind, action in list(expected.items()):
                # At the top of the ladder a climb is cancelled as it falls due, not fired.
                topped = escalates_nowhere(self.definition, action, snap)
                if topped and kind not in kinds and (kind, episode[0][0]) in snap.cancelled:
                    del expected[kind]
            assert kinds == sorted(expected), (snap.state, kinds, sorted(expected), now)
            for _, kind, _, _, state, action in snap.pending:
                assert state == snap.state and action == expected[kind]

        @invariant()
        def timers_are_cancelled_only_when_superseded(self):
            """A timer is cancelled only by a later step that makes it moot: the state was
            left, an action restarted its kind, or the deadline it counts from moved."""
            snap = _snap(db, self.blocker_id)
            deadline_kinds = {
                t.kind
                for spec in self.definition.states.values()
                for t in spec.timers
                if t.anchor == "deadline"
            }
            action_of = {
                t.kind: t.action for spec in self.definition.states.values() for t in spec.timers
            }
            for kind, enter_seq in snap.cancelled:
                if escalates_nowhere(self.definition, action_of[kind], snap):
                    continue  # fell due at the top of the ladder: nothing to climb to
                later = [e for e in snap.events if e[0] > enter_seq]
                assert any(
                    e[2] != e[3]
                    or kind in self.definition.actions[e[1]].restart
                    or (kind in deadline_kinds and e[1] == "reschedule")
                    for e in later
                ), f"timer {kind} planned at event #{enter_seq} was cancelled without cause"

        @invariant()
        def repeated_steps_fall_due_in_order(self):
            snap = _snap(db, self.blocker_id)
            runs: dict[tuple[str, int], list[tuple[int, datetime]]] = {}
            for kind, enter_seq, n, due in snap.live_timers:
                runs.setdefault((kind, enter_seq), []).append((n, due))
            for key, steps in runs.items():
                steps.sort()
                assert [n for n, _ in steps] == list(range(1, len(steps) + 1)), key
                dues = [due for _, due in steps]
                assert all(a < b for a, b in zip(dues, dues[1:], strict=False)), (key, dues)

    try:
        run_state_machine_as_test(
            EngineMachine,
            settings=settings(
                max_examples=25,
                stateful_step_count=20,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        db.dispose()
