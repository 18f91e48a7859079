"""Who receives each escalation level, resolved from the unit tree (分级分层).

Receivers are found by tags on units, so a city configures its ladder in data:
``general_taskforce`` (综合专班), ``executive_vice_mayor`` (常务副市长),
``sector:<category>`` on a deputy mayor's office, ``city_government`` (市政府).
"""

from __future__ import annotations

from sqlmodel import Session, select

from service.models import Unit
from workflows.definition import Definition


def _ancestors(session: Session, unit: Unit) -> list[Unit]:
    ids = [int(p) for p in unit.path.strip("/").split("/") if p]
    rows = {u.id: u for u in session.exec(select(Unit).where(Unit.id.in_(ids)))}
    return [rows[i] for i in ids if i in rows]


def city_of(session: Session, unit: Unit) -> Unit:
    """The nearest city-level government above (or at) the unit; the root if there is none."""
    chain = _ancestors(session, unit)
    for candidate in reversed(chain):
        if candidate.level == "city" and candidate.kind == "government":
            return candidate
    return chain[0] if chain else unit


def _tagged(session: Session, city: Unit, tag: str) -> Unit | None:
    candidates = session.exec(
        select(Unit)
        .where(
            Unit.path.startswith(city.path), Unit.kind.in_(("taskforce", "leader", "government"))
        )
        .order_by(Unit.id)
    )
    return next((u for u in candidates if tag in (u.tags or [])), None)


def receiver_for(
    session: Session, definition: Definition, level: int, responsible: Unit, category: str
) -> Unit:
    """The unit that receives `level` for a blocker of `category` owned by `responsible`."""
    rung = definition.rung(min(level, definition.top_level))
    assert rung is not None
    if rung.receiver == "responsible_unit" or level == 0:
        return responsible
    city = city_of(session, responsible)
    general = _tagged(session, city, "general_taskforce")
    if rung.receiver == "general_taskforce":
        return general or city
    if rung.receiver == "sector_leader":
        cross = any(c and c in category for c in definition.escalation.cross_sector_categories)
        leader = None if cross else _tagged(session, city, f"sector:{category}")
        return leader or _tagged(session, city, "executive_vice_mayor") or general or city
    return _tagged(session, city, "city_government") or city


def general_taskforce(session: Session, unit: Unit) -> Unit:
    city = city_of(session, unit)
    return _tagged(session, city, "general_taskforce") or city
