"""Who receives each escalation level, resolved from the unit tree (分级分层).

Receivers are found by tags on units, so a city configures its ladder in data:
``general_taskforce`` (综合专班), ``executive_vice_mayor`` (常务副市长),
``sector:<category>`` on a deputy mayor's office, ``city_government`` (市政府); and
``oversees:<unit code>`` on the office of the leader in charge of that unit (its 分管领导),
who holds the 约谈 of a unit ranked last twice.

A city whose units carry no tags (api.md's unit has none) gets the ladder its units' own
kinds and names say: the city's general taskforce is its `taskforce` named 综合专班 (else
综合…), …领导小组办公室 or "General Taskforce …" (or its only city-level taskforce); the executive vice
mayor, a `leader` named 常务… or "Executive …" (or its only city-level leader); a sector's
deputy mayor, a `leader` whose name holds the category (分管副市长（用地）); the city
government, the city itself. A tag, where one is set, always wins.
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


GENERAL_TASKFORCE_NAMES = (
    "综合专班",
    "综合",
    "领导小组办公室",
    "general taskforce",
    "leading group",
)
EXECUTIVE_NAMES = ("常务", "executive")


def _named(unit: Unit, words: tuple[str, ...]) -> bool:
    name = unit.name.lower()
    return any(word in name for word in words)


def _by_convention(units: list[Unit], city: Unit, tag: str) -> Unit | None:
    """The untagged receiver that the units' kinds and names point at, if exactly clear."""
    in_city = [u for u in units if u.level == city.level and not u.tags]
    if tag == "general_taskforce":
        taskforces = [u for u in in_city if u.kind == "taskforce"]
        # The most telling name first: 综合专班 before a mere 综合…, "General Taskforce"
        # rather than "General Aviation Taskforce".
        for word in GENERAL_TASKFORCE_NAMES:
            named = [u for u in taskforces if _named(u, (word,))]
            if named:
                return named[0]
        return taskforces[0] if len(taskforces) == 1 else None
    leaders = [u for u in in_city if u.kind == "leader"]
    if tag == "executive_vice_mayor":
        named = [u for u in leaders if _named(u, EXECUTIVE_NAMES)]
        return named[0] if named else (leaders[0] if len(leaders) == 1 else None)
    if tag.startswith("sector:") and tag[len("sector:") :]:
        category = tag[len("sector:") :].lower()
        return next(
            (u for u in leaders if category in u.name.lower() and not _named(u, EXECUTIVE_NAMES)),
            None,
        )
    return None


def _tagged(session: Session, city: Unit, tag: str) -> Unit | None:
    candidates = list(
        session.exec(
            select(Unit)
            .where(
                Unit.path.startswith(city.path),
                Unit.kind.in_(("taskforce", "leader", "government")),
            )
            .order_by(Unit.id)
        )
    )
    tagged = next((u for u in candidates if tag in (u.tags or [])), None)
    return tagged or _by_convention(candidates, city, tag)


def receiver_for(
    session: Session, definition: Definition, level: int, responsible: Unit, category: str
) -> Unit:
    """The unit that receives `level` for a blocker of `category` owned by `responsible`."""
    rung = definition.rung(min(level, definition.top_level))
    assert rung is not None
    if rung.receiver == "responsible_unit" or level == 0:
        return responsible
    city = city_of(session, responsible)
    government = _tagged(session, city, "city_government") or city
    if rung.receiver == "general_taskforce":
        return _tagged(session, city, "general_taskforce") or government
    if rung.receiver == "sector_leader":
        # Never back down to the rung below: without a deputy mayor's office or an
        # executive vice mayor's, the matter goes up to the city government.
        cross = any(c and c in category for c in definition.escalation.cross_sector_categories)
        leader = None if cross else _tagged(session, city, f"sector:{category}")
        return leader or _tagged(session, city, "executive_vice_mayor") or government
    return government


def overseer(session: Session, unit: Unit) -> Unit | None:
    """The office of the leader in charge of `unit` (its 分管领导), if the city says so: the
    unit tagged ``oversees:<the unit's code>``."""
    return _tagged(session, city_of(session, unit), f"oversees:{unit.code}")


def general_taskforce(session: Session, unit: Unit) -> Unit:
    city = city_of(session, unit)
    return _tagged(session, city, "general_taskforce") or city
