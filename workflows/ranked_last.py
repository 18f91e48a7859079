"""A unit ranked last in the monthly ranking for consecutive months is escalated itself
(domain.md "Escalation", seed 004): twice → its leader in charge (分管领导约谈, level 2),
three times or more → the principal leader (主要领导约谈, level 3), each receiver resolved
from the unit tree like any rung of the ladder.

The entry has no blocker. It enters the receiving level's queue, is announced in that
level's chat groups, and is written once per unit and month (a unique key on the unit and
the step): a second briefing tick, another replica, or a clock jump never writes it twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from service.models import Escalation, Unit
from workflows import ladder
from workflows.context import EngineContext
from workflows.outbox import add_unit_message, chat_channels
from workflows.world import unit_leads

REASON = "ranked_last"
MEETINGS = {2: "分管领导约谈", 3: "主要领导约谈"}


def level_for(times: int) -> int:
    """The rung a unit last `times` months running is escalated to (none for once)."""
    return 0 if times < 2 else 2 if times == 2 else 3


def escalate_ranked_last(
    session: Session, ctx: EngineContext, unit_id: int, times: int, month: str, now: datetime
) -> Escalation | None:
    """The queue entry (and its messages) for `unit_id`, last `times` months up to `month`
    (YYYY-MM); None when once is all, or when it was written already."""
    level = level_for(times)
    unit = session.get(Unit, unit_id)
    if level == 0 or unit is None:
        return None
    meeting = MEETINGS[level]
    definition = ctx.workflows[ctx.default_workflow].definition
    level = min(level, definition.top_level)
    step = f"ranked-last-{month}"
    taken = select(Escalation.id).where(
        Escalation.blocker_id.is_(None), Escalation.from_unit_id == unit.id, Escalation.step == step
    )
    if session.exec(taken).first() is not None:
        return None
    # 分管领导约谈: the unit's own leader in charge where the city has said who that is.
    in_charge = ladder.overseer(session, unit) if level == 2 else None
    target = in_charge or ladder.receiver_for(session, definition, level, unit, "")
    year, mon = month.split("-")
    entry = Escalation(
        blocker_id=None,
        level=level,
        reason=REASON,
        detail=f"{unit.name}连续 {times} 个月在月度督办通报中排名末位（至{int(year)}年{int(mon)}月），"
        f"由{meeting}。",
        step=step,
        status="open",
        from_unit_id=unit.id,
        target_unit_id=target.id,
        created_at=now,
    )
    session.add(entry)
    session.flush()
    rung = definition.rung(level)
    context = {
        "escalation_id": entry.id,
        "month": f"{int(year)}年{int(mon)}月",
        "ranked_unit": unit.name,
        "times": times,
        "meeting": meeting,
        "level": level,
        "level_label": rung.label if rung else str(level),
        "recipient_unit": target.name,
    }
    leads = unit_leads(session, target.id)
    for channel in chat_channels(session, [target.id]):
        add_unit_message(
            session,
            channel,
            kind="ranked_last",
            event_type="unit.escalated",
            delivery_id=f"ranked-last-{month}-{unit.id}-{channel.id}",
            context=context,
            now=now,
            mentions=leads,  # whoever arranges the 约谈
        )
    session.flush()
    return entry
