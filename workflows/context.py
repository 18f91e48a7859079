"""What the engine needs from its host: definitions, clock, calendar, office hours."""

from __future__ import annotations

from dataclasses import dataclass, field

from workflows.calendar_store import CalendarStore
from workflows.clock import Clock, SystemClock
from workflows.definition import Workflow, load_all


@dataclass
class EngineContext:
    workflows: dict[str, Workflow] = field(default_factory=load_all)
    clock: Clock = field(default_factory=SystemClock)
    calendars: CalendarStore = field(default_factory=CalendarStore)
    default_workflow: str = "blocker"
    office_open: str = "08:30"
    office_close: str = "18:00"
    # Set on PostgreSQL: rows are locked with SELECT … FOR UPDATE.
    lock_rows: bool = False
    # Months ("2026-03") whose briefing this process has written or found written.
    briefed: set[str] = field(default_factory=set)
    # The day ("2026-03-02") whose digests this process has settled, and for which chat
    # channels: written, or with nothing to say at the digest's moment (no digest that day,
    # rather than one later in the day repeating a message just sent).
    digested: tuple[str, set[int]] = field(default_factory=lambda: ("", set()))
