"""Workflow definitions as data: load, validate, and build one `transitions` machine each."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from transitions import Machine

DEFINITIONS_DIR = Path(__file__).resolve().parent / "definitions"

ACTOR_ROLES = ("taskforce", "responsible_unit", "creator", "escalation_target", "system")
RECIPIENTS = ("responsible_unit", "taskforce", "escalation_target")
RECEIVERS = ("responsible_unit", "general_taskforce", "sector_leader", "city_government")
EFFECTS = (
    "set_assignment",
    "start_at_authority_level",
    "restart_timers",
    "close_escalations",
    "count_return",
    "new_deadline",
    "escalate_on_repeated_failure",
    "escalate",
    "remind_then_escalate",
    "move_deadline",
)


class DefinitionError(ValueError):
    """A definition that cannot be used; the message names the file, the key and the fault."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Repeat(_Model):
    working_days: int = Field(ge=1)
    max: int | None = Field(None, ge=1)


class TimerSpec(_Model):
    kind: str = Field(pattern=r"^[a-z0-9_]+$")
    anchor: Literal["entered", "deadline"]
    working_days: int | None = None
    hours: float | None = None
    at: str = Field("end", pattern=r"^(end|([01][0-9]|2[0-3]):[0-5][0-9])$")
    action: str
    urgent: bool = False
    repeat: Repeat | None = None

    @field_validator("hours")
    @classmethod
    def _one_offset(cls, value: float | None, info) -> float | None:
        if value is not None and info.data.get("working_days") is not None:
            raise ValueError("give either working_days or hours, not both")
        return value


class StateSpec(_Model):
    label: str
    final: bool = False
    timers: list[TimerSpec] = Field(default_factory=list)


class Notify(_Model):
    template: str = Field(pattern=r"^[a-z0-9_]+$")
    to: Literal["responsible_unit", "taskforce", "escalation_target"]
    urgent: bool = False


class Branch(_Model):
    when: dict[str, Any]
    to: str | None = None
    effects: list[str] = Field(default_factory=list)
    notify: list[Notify] = Field(default_factory=list)


class ActionSpec(_Model):
    label: str = ""
    from_: list[str] = Field(alias="from", min_length=1)
    to: str | None = None
    requires: list[str] = Field(default_factory=list)
    actors: list[Literal["taskforce", "responsible_unit", "creator", "escalation_target", "system"]]
    effects: list[str] = Field(default_factory=list)
    notify: list[Notify] = Field(default_factory=list)
    branches: list[Branch] = Field(default_factory=list)
    restart: list[str] = Field(default_factory=list)
    escalation_reason: str | None = None
    escalate_on_step: int | None = None

    @property
    def system_only(self) -> bool:
        return self.actors == ["system"]


class Rung(_Model):
    level: int = Field(ge=0)
    label: str
    receiver: Literal["responsible_unit", "general_taskforce", "sector_leader", "city_government"]


class EscalationSpec(_Model):
    ladder: list[Rung] = Field(min_length=1)
    cross_sector_categories: list[str] = Field(default_factory=list)
    failed_verifications_to_escalate: int = Field(2, ge=1)


class DeadlineDefault(_Model):
    working_days: int | None = Field(None, ge=0)
    months: int | None = Field(None, ge=1)


class Definition(_Model):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    title: str
    initial: str
    states: dict[str, StateSpec]
    actions: dict[str, ActionSpec]
    escalation: EscalationSpec
    default_deadline: dict[str, DeadlineDefault] = Field(default_factory=dict)

    @property
    def top_level(self) -> int:
        return max(r.level for r in self.escalation.ladder)

    def rung(self, level: int) -> Rung | None:
        return next((r for r in self.escalation.ladder if r.level == level), None)

    @property
    def open_states(self) -> list[str]:
        return [name for name, spec in self.states.items() if not spec.final]


def _check_references(d: Definition) -> list[tuple[str, str]]:
    """Cross-key checks pydantic cannot do; returns (key, problem) pairs."""
    problems: list[tuple[str, str]] = []
    if d.initial not in d.states:
        problems.append(("initial", f"'{d.initial}' is not a state"))
    for name, action in d.actions.items():
        for source in action.from_:
            if source not in d.states:
                problems.append((f"actions.{name}.from", f"'{source}' is not a state"))
        targets = [action.to] + [b.to for b in action.branches]
        for target in targets:
            if target is not None and target not in d.states:
                problems.append((f"actions.{name}.to", f"'{target}' is not a state"))
        effects = list(action.effects) + [e for b in action.branches for e in b.effects]
        for effect in effects:
            if effect not in EFFECTS:
                problems.append((f"actions.{name}.effects", f"unknown effect '{effect}'"))
        if action.to is not None and action.branches:
            problems.append((f"actions.{name}", "give either 'to' or 'branches', not both"))
        if "escalate" in effects and not action.escalation_reason:
            problems.append(
                (f"actions.{name}.escalation_reason", "required with the escalate effect")
            )
    for state, spec in d.states.items():
        for i, timer in enumerate(spec.timers):
            key = f"states.{state}.timers[{i}]"
            if timer.action not in d.actions:
                problems.append((f"{key}.action", f"'{timer.action}' is not an action"))
            elif state not in d.actions[timer.action].from_:
                problems.append(
                    (f"{key}.action", f"'{timer.action}' is not allowed from '{state}'")
                )
            if timer.working_days is None and timer.hours is None:
                problems.append((key, "needs working_days or hours"))
    levels = sorted(r.level for r in d.escalation.ladder)
    if levels != list(range(len(levels))):
        problems.append(("escalation.ladder", "levels must be 0, 1, 2 … without gaps"))
    return problems


def load_definition(path: Path) -> Definition:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise DefinitionError(f"{path}: the top level must be a mapping")
    try:
        definition = Definition.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise DefinitionError(f"{path}: key '{key}': {first['msg']}") from exc
    problems = _check_references(definition)
    if problems:
        key, what = problems[0]
        raise DefinitionError(f"{path}: key '{key}': {what}")
    return definition


class Workflow:
    """A definition plus its state machine, built once (never one machine per row)."""

    def __init__(self, definition: Definition) -> None:
        self.definition = definition
        self.machine = Machine(
            model=None,
            states=list(definition.states),
            initial=definition.initial,
            auto_transitions=False,
            send_event=True,
        )
        # The one branch of an action without `branches` (no effects or messages of its own).
        self._plain = {
            name: Branch(when={}, to=action.to, effects=[], notify=[])
            for name, action in definition.actions.items()
        }
        for name, action in definition.actions.items():
            branches = action.branches or [Branch(when={}, to=action.to)]
            for branch in branches:
                self.machine.add_transition(
                    name,
                    action.from_,
                    branch.to if branch.to is not None else None,
                    conditions=[_matches(branch.when)],
                )

    @property
    def name(self) -> str:
        return self.definition.name

    def allowed_actions(self, state: str, *, include_system: bool = False) -> list[str]:
        return [
            name
            for name, action in self.definition.actions.items()
            if state in action.from_ and (include_system or not action.system_only)
        ]

    def branch_for(self, action: str, payload: dict[str, Any]) -> Branch:
        spec = self.definition.actions[action]
        if not spec.branches:
            return self._plain[action]
        for branch in spec.branches:
            if all(payload.get(k) == v for k, v in branch.when.items()):
                return branch
        raise DefinitionError(f"{self.name}: no branch of '{action}' matches {payload}")

    def fire(self, state: str, action: str, payload: dict[str, Any]) -> str:
        """Run the transition on a throw-away carrier; return the state it leads to."""
        carrier = _Carrier(state)
        if not self.machine.events[action].trigger(carrier, payload=payload):
            raise DefinitionError(f"{self.name}: '{action}' did not fire from '{state}'")
        return carrier.state


class _Carrier:
    """What the machine moves instead of an ORM row (see style.md: no add_model on rows)."""

    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state


def _matches(when: dict[str, Any]):
    def condition(event_data) -> bool:
        payload = event_data.kwargs.get("payload", {})
        return all(payload.get(k) == v for k, v in when.items())

    return condition


def load_all(directory: Path = DEFINITIONS_DIR) -> dict[str, Workflow]:
    workflows: dict[str, Workflow] = {}
    for path in sorted(directory.glob("*.yaml")):
        definition = load_definition(path)
        if definition.name in workflows:
            raise DefinitionError(f"{path}: key 'name': '{definition.name}' is defined twice")
        workflows[definition.name] = Workflow(definition)
    if not workflows:
        raise DefinitionError(f"{directory}: no workflow definitions (*.yaml) found")
    return workflows
