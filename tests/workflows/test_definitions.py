"""Workflow definitions: the shipped ones load, every (state, action) pair behaves as the YAML
says (in the definition, in the `transitions` machine and through the engine), and a broken
definition is refused with a message that names the file, the key and the fault."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import select
from transitions import MachineError

from service.db import Database
from service.models import Blocker, Event, Project, Unit
from workflows import engine
from workflows.calendar import WorkingDayCalendar
from workflows.clock import ManualClock
from workflows.context import EngineContext
from workflows.definition import (
    DEFINITIONS_DIR,
    DefinitionError,
    Workflow,
    load_all,
    load_definition,
)
from workflows.errors import EngineError, Forbidden, NotAllowed

WORKFLOWS = load_all()
ADMIN = engine.Actor(name="admin", is_admin=True)
START = datetime.fromisoformat("2026-03-02T09:30:00+08:00")

PAIRS = [
    (name, state, action)
    for name, workflow in sorted(WORKFLOWS.items())
    for state in workflow.definition.states
    for action in workflow.definition.actions
]


def _yaml(name: str) -> dict[str, Any]:
    return yaml.safe_load((DEFINITIONS_DIR / f"{name}.yaml").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- shipped definitions
def test_shipped_definitions_load_with_their_states_and_actions():
    assert sorted(WORKFLOWS) == ["blocker", "w13710"]
    for name, workflow in WORKFLOWS.items():
        raw = _yaml(name)
        assert isinstance(workflow, Workflow) and workflow.name == raw["name"] == name
        assert list(workflow.definition.states) == list(raw["states"])
        assert list(workflow.definition.actions) == list(raw["actions"])
        assert set(workflow.machine.states) == set(raw["states"])
        assert workflow.definition.initial == "collected"
        assert [s for s, spec in raw["states"].items() if spec.get("final")] == [
            "closed",
            "withdrawn",
        ]
        assert workflow.definition.top_level == 3
    # Only the 13710 variant lets assign omit the deadline (7 working days / 1 month).
    assert WORKFLOWS["blocker"].definition.default_deadline == {}
    defaults = WORKFLOWS["w13710"].definition.default_deadline
    assert defaults["ordinary"].working_days == 7 and defaults["complex"].months == 1
    assert "deadline" in WORKFLOWS["blocker"].definition.actions["assign"].requires
    assert "deadline" not in WORKFLOWS["w13710"].definition.actions["assign"].requires


@pytest.mark.parametrize(("workflow", "state", "action"), PAIRS, ids=lambda v: str(v))
def test_state_action_pair_matches_the_yaml(workflow, state, action):
    """Allowed iff the YAML's `from` lists the state; timer-only actions hide from people."""
    raw = _yaml(workflow)["actions"][action]
    in_from = state in raw["from"]
    system_only = raw["actors"] == ["system"]
    wf = WORKFLOWS[workflow]
    assert (action in wf.allowed_actions(state, include_system=True)) is in_from
    assert (action in wf.allowed_actions(state)) is (in_from and not system_only)
    # The transitions machine built from the definition agrees.
    assert bool(wf.machine.get_transitions(trigger=action, source=state)) is in_from
    if not in_from:
        with pytest.raises(MachineError):
            wf.fire(state, action, {"satisfied": True})
        return
    branches = raw.get("branches") or [{"when": {}, "to": raw.get("to")}]
    for branch in branches:
        assert wf.fire(state, action, dict(branch["when"])) == (branch["to"] or state)


# --------------------------------------------------------------------------- through the engine
def _seed(db: Database) -> None:
    with db.unit_of_work() as session:
        parents: dict[str, Unit] = {}
        for code, level, kind, parent, tags in (
            ("xx", "city", "government", None, ["city_government"]),
            ("xx-zb", "city", "taskforce", "xx", ["general_taskforce"]),
            ("xx-cwfsz", "city", "leader", "xx", ["executive_vice_mayor"]),
            ("wy", "county", "government", "xx", []),
        ):
            unit = Unit(code=code, name=code, level=level, kind=kind, tags=tags)
            unit.parent_id = parents[parent].id if parent else None
            session.add(unit)
            session.flush()
            unit.path = f"{parents[parent].path if parent else '/'}{unit.id}/"
            parents[code] = unit
        session.add(Project(code="P1", name="项目P1", category="省市重点", county_unit_id=unit.id))


def _row(session, workflow: str, state: str) -> Blocker:
    """A blocker standing in `state` (set up directly: the pair under test is the next step)."""
    project = session.exec(select(Project)).one()
    wy = session.exec(select(Unit).where(Unit.code == "wy")).one()
    assigned = state != "collected"
    deadline = date(2026, 3, 13)
    blocker = Blocker(
        project_id=project.id,
        title="用地手续办理滞后",
        category="用地",
        workflow=workflow,
        state=state,
        unit_id=wy.id if assigned else None,
        deadline=deadline if assigned else None,
        due_at=WorkingDayCalendar().end_of_day(deadline) if assigned else None,
    )
    session.add(blocker)
    session.flush()
    return blocker


PAYLOADS: dict[str, dict[str, Any]] = {
    "assign": {"unit": "wy", "deadline": {"working_days": 5}},
    "feedback": {"note": "进展"},
    "report_resolved": {"note": "已解决"},
    "close": {"note": "销号"},
    "withdraw": {"reason": "重复上报"},
    "request_escalation": {"reason": "需市级层面协调"},
    "reschedule": {"deadline": "2026-03-16", "previous_deadline": "2026-03-13"},
}


@pytest.mark.parametrize("workflow", sorted(WORKFLOWS))
def test_engine_allows_and_refuses_every_pair_as_the_yaml_says(db_url, workflow):
    db = Database(db_url)
    _seed(db)
    ctx = EngineContext(workflows=WORKFLOWS, clock=ManualClock(START), lock_rows=db.is_postgres)
    raw = _yaml(workflow)
    checked = 0
    try:
        for state in raw["states"]:
            people_may = [
                a
                for a, spec in raw["actions"].items()
                if state in spec["from"] and spec["actors"] != ["system"]
            ]
            for action, spec in raw["actions"].items():
                system_only = spec["actors"] == ["system"]
                branches = spec.get("branches") or [{"when": {}, "to": spec.get("to")}]
                for branch in branches:
                    payload = {**PAYLOADS.get(action, {}), **branch["when"]}
                    if action == "verify":
                        payload["note"] = "回访"
                    for actor in (ADMIN, engine.SYSTEM_TIMER):
                        with db.unit_of_work() as session:
                            blocker_id = _row(session, workflow, state).id
                        refused: EngineError | None = None
                        try:
                            with db.unit_of_work() as session:
                                engine.apply(session, ctx, blocker_id, action, actor, payload)
                        except EngineError as exc:
                            refused = exc
                        with db.unit_of_work(readonly=True) as session:
                            after = session.get(Blocker, blocker_id)
                            events = session.exec(
                                select(Event.action).where(Event.blocker_id == blocker_id)
                            ).all()
                        where = (workflow, state, action, actor.name, payload, refused)
                        if state not in spec["from"] or (system_only and not actor.is_system):
                            expected: type[EngineError] | None = NotAllowed
                        elif actor.is_system and not system_only:
                            expected = Forbidden  # a timer never acts for people
                        else:
                            expected = None
                        if expected is None:
                            assert refused is None, where
                            assert after.state == (branch["to"] or state), where
                            assert after.version == 2 and list(events) == [action], where
                        else:
                            assert type(refused) is expected, where
                            assert (after.state, after.version, list(events)) == (state, 1, []), (
                                where
                            )
                        if expected is NotAllowed:
                            assert refused.extra["state"] == state, where
                            if actor is ADMIN:
                                assert refused.extra["allowed_actions"] == people_may, where
                        checked += 1
        assert checked == 2 * sum(
            len(spec.get("branches") or [None]) * len(raw["states"])
            for spec in raw["actions"].values()
        )
        with db.unit_of_work() as session:
            blocker_id = _row(session, workflow, "collected").id
        with pytest.raises(NotAllowed) as unknown, db.unit_of_work() as session:
            engine.apply(session, ctx, blocker_id, "frobnicate", ADMIN, {})
        assert unknown.value.extra["allowed_actions"] == ["assign", "withdraw"]
    finally:
        db.dispose()


# --------------------------------------------------------------------------- broken definitions
def _broken(tmp_path: Path, change) -> Path:
    raw = _yaml("blocker")
    change(raw)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def _ladder_gap(raw):
    raw["escalation"]["ladder"] = [r for r in raw["escalation"]["ladder"] if r["level"] != 2]


BROKEN = {
    "unknown state in from": (
        lambda raw: raw["actions"]["acknowledge"]["from"].append("limbo"),
        "actions.acknowledge.from",
        "'limbo' is not a state",
    ),
    "unknown target state": (
        lambda raw: raw["actions"]["close"].__setitem__("to", "archived"),
        "actions.close.to",
        "'archived' is not a state",
    ),
    "unknown effect": (
        lambda raw: raw["actions"]["assign"]["effects"].append("teleport"),
        "actions.assign.effects",
        "unknown effect 'teleport'",
    ),
    "unknown effect in a branch": (
        lambda raw: raw["actions"]["verify"]["branches"][1]["effects"].append("teleport"),
        "actions.verify.effects",
        "unknown effect 'teleport'",
    ),
    "timer naming a missing action": (
        lambda raw: raw["states"]["assigned"]["timers"][0].__setitem__("action", "nudge"),
        "states.assigned.timers[0].action",
        "'nudge' is not an action",
    ),
    "timer naming an action its state does not allow": (
        lambda raw: raw["states"]["assigned"]["timers"][0].__setitem__("action", "close"),
        "states.assigned.timers[0].action",
        "'close' is not allowed from 'assigned'",
    ),
    "bad at time": (
        lambda raw: raw["states"]["supervised"]["timers"][0].__setitem__("at", "25:00"),
        "states.supervised.timers.0.at",
        "should match pattern",
    ),
    "ladder with a gap": (
        _ladder_gap,
        "escalation.ladder",
        "without gaps",
    ),
    "unknown initial state": (
        lambda raw: raw.__setitem__("initial", "nowhere"),
        "initial",
        "'nowhere' is not a state",
    ),
    "escalate without a reason": (
        lambda raw: raw["actions"]["climb"].pop("escalation_reason"),
        "actions.climb.escalation_reason",
        "required with the escalate effect",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_definition_names_file_key_and_fault(tmp_path, case):
    change, key, fault = BROKEN[case]
    path = _broken(tmp_path, change)
    with pytest.raises(DefinitionError) as err:
        load_definition(path)
    message = str(err.value)
    assert message.startswith(f"{path}: "), message
    assert f"key '{key}'" in message, message
    assert fault in message, message


def test_not_yaml_names_the_file(tmp_path):
    path = tmp_path / "garbled.yaml"
    path.write_text("name: [unclosed\n  states: {\n", encoding="utf-8")
    with pytest.raises(DefinitionError) as err:
        load_definition(path)
    assert str(err.value).startswith(f"{path}: not valid YAML"), err.value
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(DefinitionError, match="the top level must be a mapping"):
        load_definition(path)


def test_directory_problems_are_refused(tmp_path):
    with pytest.raises(DefinitionError, match="no workflow definitions"):
        load_all(tmp_path)
    text = (DEFINITIONS_DIR / "blocker.yaml").read_text(encoding="utf-8")
    (tmp_path / "a.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(DefinitionError) as err:
        load_all(tmp_path)
    assert str(err.value) == f"{tmp_path / 'b.yaml'}: key 'name': 'blocker' is defined twice"
    # A valid copy under another name loads beside the shipped ones' twin.
    (tmp_path / "b.yaml").write_text(text.replace("name: blocker", "name: pilot"), "utf-8")
    assert sorted(load_all(tmp_path)) == ["blocker", "pilot"]
