"""The monthly briefing (月度督办通报, seed 004): from 09:00 on the first working day of a
month, the ranking of the responsible units over the month before, sent to the chat groups
of every ranked unit and of their general taskforce.

The units ranked last (of those with anything to rank; all that share the last place, unless
every unit does) are named for 通报批评; a unit last in consecutive months is marked for 约谈 — twice by the leader in charge (分管领导约谈),
three times or more by the principal leader (主要领导约谈). One row per channel and month,
keyed by its delivery id, so it is never sent twice; a month missed while the service was
down is sent when it comes back, within that month. A unit last for consecutive months is
also escalated itself (`workflows.ranked_last`), in the same transaction.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from sqlmodel import Session

from service.models import Unit
from workflows import ladder
from workflows.calendar import add_months
from workflows.context import EngineContext
from workflows.outbox import add_unit_message, already_written, chat_channels
from workflows.ranked_last import escalate_ranked_last
from workflows.ranking import by_level, standing, unit_ranking

BRIEFING_AT = "09:00"
# Rows in the message (the top, and the last): 20 long unit names with two-digit counts fit
# a WeCom markdown message (4,096 bytes); all are in GET /reports/units.
LISTED = 20


def _month_before(day: date, months: int = 1) -> date:
    """The first day of the month `months` before `day`'s."""
    return add_months(day.replace(day=1), -months)


# Units are ranked against units of their own level (seed 003 ranks 乡镇街道 and 市直单位
# apart): county governments with county governments, city departments with departments.
SECTIONS = {
    "county": "县（市、区）",
    "city": "市直单位",
    "township": "乡镇（街道）",
    "province": "省直单位",
}


Rankings = dict[date, dict[str, list[dict[str, Any]]]]


def _month(session: Session, first: date, tz, seen: Rankings) -> dict[str, list[dict[str, Any]]]:
    """The ranked units of the month beginning `first`, per level; each month is tallied
    once (`seen`), for all its levels."""
    if first not in seen:
        start = datetime.combine(first, time.min, tz)
        end = datetime.combine(_month_before(first, -1), time.min, tz)
        seen[first] = {
            level: [r for r in rows if r["rank"] is not None]
            for level, rows in by_level(unit_ranking(session, start, end)).items()
        }
    return seen[first]


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def briefing_rows(rows: list[dict[str, Any]], room: int = LISTED) -> list[dict[str, Any]]:
    """The message's lines: every ranked unit, or past `room` the top and the last, the
    last marked as coming after a gap."""
    listed = rows if len(rows) <= room else [*rows[: room - 1], rows[-1]]
    return [
        {
            "rank": r["rank"],
            "gap_before": r is rows[-1] and len(listed) < len(rows),
            "unit_id": r["unit_id"],
            "name": r["name"],
            "assigned": r["assigned"],
            "overdue": r["overdue"],
            "open_blockers": r["open_blockers"],
            "on_time_rate": _percent(r["on_time_rate"]),
            "response_rate": _percent(r["response_rate"]),
            "satisfaction_rate": _percent(r["satisfaction_rate"]),
        }
        for r in listed
    ]


def last_place(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The units ranked last (倒数第一, seed 004): every unit that shares the last place,
    unless every unit does (then none did worse than another)."""
    if len(rows) < 2 or standing(rows[0]) == standing(rows[-1]):
        return []
    return [r for r in rows if standing(r) == standing(rows[-1])]


def _months_last(
    session: Session, month: date, tz, level: str, unit_ids: list[int], seen: Rankings
) -> dict[int, int]:
    """How many months running, up to `month`, each of `unit_ids` (last in it among the
    units of `level`) was last among them."""
    times, still = dict.fromkeys(unit_ids, 1), set(unit_ids)
    for back in range(1, 12):
        earlier = last_place(_month(session, _month_before(month, back), tz, seen).get(level, []))
        still &= {r["unit_id"] for r in earlier}
        if not still:
            break
        times.update(dict.fromkeys(still, back + 1))
    return times


def briefing_context(session: Session, month: date, tz) -> tuple[dict[str, Any], list[int]] | None:
    """What the briefing of `month` (its first day) says, and every ranked unit (its
    recipients); None when nothing was ranked. One section per level of the ranked units,
    each with its own ranking and its own last place."""
    seen: Rankings = {}
    levels = {level for level, rows in _month(session, month, tz, seen).items() if rows}
    if not levels:
        return None
    ordered = [level for level in SECTIONS if level in levels] + sorted(levels - set(SECTIONS))
    room = max(5, LISTED // len(ordered))
    sections, lasts, ranked = [], [], []
    for level in ordered:
        rows = seen[month][level]
        last = last_place(rows)
        times = _months_last(session, month, tz, level, [r["unit_id"] for r in last], seen)
        mine = [
            {"name": r["name"], "unit_id": r["unit_id"], "times": times[r["unit_id"]]} for r in last
        ]
        lasts += mine
        label = SECTIONS.get(level, level) if len(ordered) > 1 else None
        sections.append(
            {"label": label, "units": len(rows), "rows": briefing_rows(rows, room), "lasts": mine}
        )
        ranked += [r["unit_id"] for r in rows]
    context = {
        "month": f"{month.year}年{month.month}月",
        "units": len(ranked),
        "sections": sections,
        "lasts": lasts,
        # What briefings written before `sections` and `lasts` hold.
        "rows": sections[0]["rows"],
        "last": lasts[0] if lasts else None,
    }
    return context, ranked


def enqueue_monthly_briefing(session: Session, ctx: EngineContext) -> int:
    """Write last month's briefing once its time has come, if not written yet."""
    now = ctx.clock.now()
    cal = ctx.calendars.get(session)
    today = cal.local_date(now)
    first_working = cal.next_working_day(today.replace(day=1), include_self=True)
    month = _month_before(today)
    key = f"{month:%Y-%m}"
    if key in ctx.briefed or today < first_working:
        return 0
    if today == first_working and now < cal.at_local(today, BRIEFING_AT):
        return 0
    briefing = briefing_context(session, month, cal.tz)
    written = 0
    if briefing is not None:
        context, ranked_ids = briefing
        for last in context["lasts"]:
            escalate_ranked_last(session, ctx, last["unit_id"], last["times"], key, now)
        ranked = [session.get(Unit, unit_id) for unit_id in ranked_ids]
        units = {u.id: u for u in ranked if u is not None}
        for unit in list(units.values()):
            taskforce = ladder.general_taskforce(session, unit)
            units.setdefault(taskforce.id, taskforce)
        written = _write(session, context, units, key, now)
    if written == 0:  # nothing (more) to write; after a write, the next tick checks it landed
        ctx.briefed.add(key)
    return written


def _write(session: Session, context: dict, units: dict[int, Unit], key: str, now) -> int:
    written = 0
    for channel in chat_channels(session, units):
        delivery_id = f"briefing-{key}-{channel.id}"
        if already_written(session, delivery_id):
            continue
        add_unit_message(
            session,
            channel,
            kind="monthly_briefing",
            event_type="briefing.monthly",
            delivery_id=delivery_id,
            context={**context, "unit_name": units[channel.unit_id].name},
            now=now,
        )
        written += 1
    session.flush()
    return written
