"""通报排名: per responsible unit, what its blockers did over a period, and the ranking.

Counts are of blockers, not of events. Shared by `GET /api/v1/reports/units` and the
monthly briefing (`workflows/briefing.py`).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement
from sqlmodel import Session, func, select

from service.models import Blocker, Event, Unit
from service.models.blocker import CLOSED_STATES
from workflows.world import chunks


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


class _Tally:
    """What one unit's blockers did in the period, blocker by blocker."""

    def __init__(self) -> None:
        self.assigned: set[int] = set()
        self.acked_on_time: set[int] = set()
        self.awaiting: set[int] = set()  # neither acknowledged nor past the ack-by yet
        self.withdrawn_unacked: set[int] = set()  # withdrawn before either: no answer due
        self.resolved: set[int] = set()
        self.resolved_in_time: set[int] = set()
        self.late: set[int] = set()
        self.verifications = self.satisfied = 0
        self.close_days: list[float] = []

    def counts(self) -> dict[str, int]:
        came_due = self.resolved_in_time | self.late
        return {
            "assigned": len(self.assigned),
            "acknowledged_on_time": len(self.acked_on_time),
            "awaiting_acknowledgement": len(self.awaiting),
            "resolved": len(self.resolved),
            "resolved_on_time": len(self.resolved_in_time - self.late),
            "overdue": len(self.late),
            "returned": self.verifications - self.satisfied,
            "verified_satisfied": self.satisfied,
            "verifications": self.verifications,
            "_came_due": len(came_due),
            "_not_answerable": len(self.withdrawn_unacked),
        }


ACK_OUTCOMES = ("acknowledge", "acknowledge_missed", "withdraw")


def _settle_ack(t: _Tally, waiting_ack: dict[int, bool], bid: int, action: str) -> None:
    """An assignment made in the period: acknowledged before its ack-by was missed, or not,
    or withdrawn before either (then it asked for no answer)."""
    if action == "acknowledge_missed":
        waiting_ack[bid] = False
        t.awaiting.discard(bid)
    elif action == "acknowledge" and waiting_ack.pop(bid, False):
        t.acked_on_time.add(bid)
        t.awaiting.discard(bid)
    elif action == "withdraw" and waiting_ack.pop(bid, False):
        t.withdrawn_unacked.add(bid)
        t.awaiting.discard(bid)


def _overdue_when_it_began(session: Session, start: datetime, clause) -> list[tuple[int, int]]:
    """(blocker, unit) of the blockers already overdue when the period began: past their
    deadline before it and not yet reported resolved (or withdrawn). They count as overdue
    in the period too, so that a unit cannot leave the ranking by leaving them alone."""
    passed = (
        select(Event.blocker_id, Blocker.unit_id)
        .join(Blocker, Blocker.id == Event.blocker_id)
        .where(Event.action == "deadline_passed", Event.at < start, Blocker.unit_id.is_not(None))
        .distinct()
    )
    if clause is not None:
        passed = passed.where(clause)
    candidates = dict(session.exec(passed).all())
    found = []
    for chunk in chunks(list(candidates)):
        last = (
            select(Event.blocker_id, func.max(Event.seq).label("seq"))
            .where(Event.blocker_id.in_(chunk), Event.at < start)
            .group_by(Event.blocker_id)
            .subquery()
        )
        states = session.exec(
            select(Event.blocker_id, Event.state_after).join(
                last, (Event.blocker_id == last.c.blocker_id) & (Event.seq == last.c.seq)
            )
        )
        found += [(bid, candidates[bid]) for bid, state in states if state == "deadline"]
    return found


def _tally(session: Session, start: datetime, end: datetime, clause) -> dict[int, _Tally]:
    """Walk the period's events of the blockers `clause` admits; then, for assignments still
    waiting at its end, only the acknowledgements that came later."""
    query = (
        select(Event, Blocker.unit_id)
        .join(Blocker, Blocker.id == Event.blocker_id)
        .where(Event.at >= start, Event.at < end, Blocker.unit_id.is_not(None))
        .order_by(Event.blocker_id, Event.seq)
    )
    if clause is not None:
        query = query.where(clause)
    tallies: dict[int, _Tally] = defaultdict(_Tally)
    for bid, unit_id in _overdue_when_it_began(session, start, clause):
        tallies[unit_id].late.add(bid)
    waiting_ack: dict[int, bool] = {}  # blocker → assigned in the period, ack-by not yet missed
    unit_of: dict[int, int] = {}
    closed: dict[int, tuple[int, datetime]] = {}
    for event, unit_id in session.exec(query):
        t, bid, action = tallies[unit_id], event.blocker_id, event.action
        unit_of[bid] = unit_id
        if action == "assign":
            t.assigned.add(bid)
            t.awaiting.add(bid)
            waiting_ack[bid] = True
        elif action in ACK_OUTCOMES:
            _settle_ack(t, waiting_ack, bid, action)
        elif action == "report_resolved":
            t.resolved.add(bid)
            if event.state_before != "deadline":
                t.resolved_in_time.add(bid)
        elif action == "deadline_passed":
            t.late.add(bid)
        elif action == "verify":
            t.verifications += 1
            t.satisfied += event.payload.get("satisfied") is True
        elif action == "close":
            closed[bid] = (unit_id, event.at)
    waiting = [bid for bid, still in waiting_ack.items() if still]
    for chunk in chunks(waiting):
        later = session.exec(
            select(Event.blocker_id, Event.action)
            .where(Event.blocker_id.in_(chunk), Event.at >= end, Event.action.in_(ACK_OUTCOMES))
            .order_by(Event.blocker_id, Event.seq)
        )
        for bid, action in later:
            _settle_ack(tallies[unit_of[bid]], waiting_ack, bid, action)
    if closed:
        first_assign = dict(
            session.exec(
                select(Event.blocker_id, func.min(Event.at))
                .where(Event.blocker_id.in_(list(closed)), Event.action == "assign")
                .group_by(Event.blocker_id)
            ).all()
        )
        for bid, (unit_id, at) in closed.items():
            if bid in first_assign:
                days = (at - first_assign[bid]).total_seconds() / 86400
                tallies[unit_id].close_days.append(days)
    return tallies


def unit_ranking(
    session: Session,
    start: datetime,
    end: datetime,
    clause: ColumnElement[bool] | None = None,
    level: str | None = None,
) -> list[dict[str, Any]]:
    """Rows for [start, end) of the units whose blockers `clause` admits (None: all), ranked
    by `standing` (ties by unit code); units with open blockers are listed even when nothing
    happened to them (their rates are None; they rank last)."""
    tallies = _tally(session, start, end, clause)
    open_q = (
        select(Blocker.unit_id, func.count())
        .where(Blocker.unit_id.is_not(None), Blocker.state.not_in(CLOSED_STATES))
        .group_by(Blocker.unit_id)
    )
    if clause is not None:
        open_q = open_q.where(clause)
    open_now = dict(session.exec(open_q).all())
    unit_ids = set(tallies) | set(open_now)
    units = {u.id: u for u in session.exec(select(Unit).where(Unit.id.in_(list(unit_ids))))}
    rows = []
    for unit_id in unit_ids:
        unit = units.get(unit_id)
        if unit is None or (level and unit.level != level):
            continue
        t = tallies.get(unit_id) or _Tally()
        n = t.counts()
        came_due, not_answerable = n.pop("_came_due"), n.pop("_not_answerable")
        days = t.close_days
        rows.append(
            {
                "unit_id": unit.id,
                "unit": unit.code,
                "path": unit.path,
                "name": unit.name,
                "level": unit.level,
                **n,
                "response_rate": _rate(
                    n["acknowledged_on_time"],
                    n["assigned"] - n["awaiting_acknowledgement"] - not_answerable,
                ),
                "on_time_rate": _rate(n["resolved_on_time"], came_due),
                "satisfaction_rate": _rate(n["verified_satisfied"], n["verifications"]),
                "average_days_to_close": round(sum(days) / len(days), 2) if days else None,
                "open_blockers": open_now.get(unit_id, 0),
            }
        )
    rows.sort(key=lambda r: (*standing(r), r["unit"]))
    _number(rows)
    return rows


def by_level(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A ranking (as `unit_ranking` orders it) split per unit level, each part numbered on
    its own: what `unit_ranking(level=…)` gives for every level, from one tally."""
    parts: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        parts.setdefault(row["level"], []).append(dict(row))
    for part in parts.values():
        _number(part)
    return parts


def _number(rows: list[dict[str, Any]]) -> None:
    """Rank sorted rows 1, 2, 2, 4…: units equal in every respect share a place. A unit
    with neither rate had nothing to rank it by: its rank is None (they sort last)."""
    for i, row in enumerate(rows):
        if row["on_time_rate"] is None and row["response_rate"] is None:
            row["rank"] = None
            continue
        tied = i > 0 and standing(row) == standing(rows[i - 1])
        row["rank"] = rows[i - 1]["rank"] if tied else i + 1


def standing(row: dict[str, Any]) -> tuple:
    """What ranks a unit, best first: on-time rate, response rate, fewest overdue,
    satisfaction, fewest days to close. Two units equal in all of it are tied.

    A rate with nothing to count missed nothing: a unit with nothing due in the period
    is not ranked below one that let its blocker go overdue. Units with neither rate
    (nothing to rank them by) come last, and the briefing leaves them out."""
    days = row["average_days_to_close"]

    def rate(name: str) -> float:
        value = row[name]
        return 1.0 if value is None else value

    return (
        row["on_time_rate"] is None and row["response_rate"] is None,
        -rate("on_time_rate"),
        -rate("response_rate"),
        row["overdue"],
        -rate("satisfaction_rate"),
        float("inf") if days is None else days,
    )
