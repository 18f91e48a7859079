"""The demo's officers: each simulated working day they act through the engine's one gate."""

from __future__ import annotations

import logging
import random
import threading

from sqlmodel import select

from service.db import Database
from service.demo import city
from service.demo.seed import World
from service.models import Blocker, Project, Unit
from service.sim_clock import store_clock
from workflows import engine
from workflows.briefing import enqueue_monthly_briefing
from workflows.context import EngineContext
from workflows.daily_digest import enqueue_daily_digests
from workflows.sweep import advance_clock

log = logging.getLogger("duban.demo")

CROSS_SECTOR = ("涉铁", "涉河", "涉电")
# Categories a city department handles rather than the county (责任单位 by category).
DEPARTMENT_FOR = {
    "环评": "xx-sthj",
    "融资": "xx-cz",
    "涉电": "xx-gdj",
    "涉河": "xx-sl",
    "用能": "xx-fgw",
}


class Simulation:
    def __init__(self, db: Database, ctx: EngineContext, world: World, rng: random.Random) -> None:
        self.db, self.ctx, self.world, self.rng = db, ctx, world, rng
        self.paused = threading.Event()
        self.stop = threading.Event()
        self.days = 0
        self.lock = threading.Lock()
        tf = world.taskforce
        self.taskforce = engine.Actor(
            name=f"demo:{tf.code}",
            unit_id=tf.id,
            unit_path=tf.path,
            scope_path=world.city.path,
            is_taskforce=True,
        )

    def unit_actor(self, unit: Unit) -> engine.Actor:
        return engine.Actor(
            name=f"demo:{unit.code}", unit_id=unit.id, unit_path=unit.path, scope_path=unit.path
        )

    # ------------------------------------------------------------- one action
    def _apply(
        self, session, blocker: Blocker, action: str, actor: engine.Actor, payload: dict
    ) -> bool:
        try:
            with session.begin_nested():
                engine.apply(session, self.ctx, blocker.id, action, actor, payload)
            return True
        except engine.EngineError as exc:
            log.debug("demo: %s on %s refused: %s", action, blocker.id, exc.detail)
            return False

    def new_blockers(self, session, count: int) -> None:
        for _ in range(count):
            project: Project = self.rng.choice(self.world.projects)
            category = self.rng.choice(list(city.BLOCKERS))
            title = self.rng.choice(city.BLOCKERS[category])
            authority = "city" if category in CROSS_SECTOR or self.rng.random() < 0.1 else "county"
            engine.create_blocker(
                session,
                self.ctx,
                self.taskforce,
                {
                    "project_id": project.id,
                    "title": title,
                    "category": category,
                    "authority_level": authority,
                    "description": f"{project.name}：{title}，影响项目按期推进。",
                    "reported_by": project.enterprise,
                    "source": "demo",
                },
            )

    def _responsible(self, session, blocker: Blocker) -> Unit:
        code = DEPARTMENT_FOR.get(blocker.category)
        if code and code in self.world.units:
            return self.world.units[code]
        project = session.get(Project, blocker.project_id)
        return session.get(Unit, project.county_unit_id)

    def act(self, session) -> None:
        """What officers do in one sitting: each open blocker may move one step."""
        r = self.rng.random
        blockers = list(
            session.exec(select(Blocker).where(Blocker.state.not_in(("closed", "withdrawn"))))
        )
        for b in blockers:
            unit = session.get(Unit, b.unit_id) if b.unit_id else None
            if b.state == "collected" and r() < 0.04:
                self._apply(
                    session, b, "withdraw", self.taskforce, {"reason": "与已有事项重复，合并办理。"}
                )
            elif b.state == "collected" and r() < 0.7:
                target = self._responsible(session, b)
                officers = self.world.officers.get(target.id, [])
                self._apply(
                    session,
                    b,
                    "assign",
                    self.taskforce,
                    {
                        "unit": target.code,
                        "officer_id": officers[-1].id if officers else None,
                        "deadline": {"working_days": self.rng.choice([3, 5, 5, 7, 10, 15])},
                    },
                )
            elif b.state == "assigned" and unit and r() < 0.6:
                self._apply(session, b, "acknowledge", self.unit_actor(unit), {})
            elif b.state in ("supervised", "deadline") and unit:
                roll = r()
                if roll < 0.12 + (0.1 if b.state == "deadline" else 0):
                    self._apply(
                        session,
                        b,
                        "report_resolved",
                        self.unit_actor(unit),
                        {
                            "note": "问题已协调解决，相关手续已办结。",
                            "evidence": ["办结材料已上传"],
                        },
                    )
                elif roll < 0.45:
                    self._apply(
                        session,
                        b,
                        "feedback",
                        self.unit_actor(unit),
                        {
                            "note": "正在加快推进，已召开专题协调会。",
                            "percent": self.rng.choice([30, 50, 70, 90]),
                        },
                    )
                elif roll < 0.47:
                    self._apply(
                        session,
                        b,
                        "request_escalation",
                        self.unit_actor(unit),
                        {"reason": "涉及跨部门事项，需市级层面协调。"},
                    )
            elif b.state == "resolved" and r() < 0.6:
                satisfied = r() < 0.75
                self._apply(
                    session,
                    b,
                    "verify",
                    self.taskforce,
                    {
                        "satisfied": satisfied,
                        "note": "已回访企业，企业满意。"
                        if satisfied
                        else "回访企业不满意，退回重办。",
                        "deadline": None if satisfied else {"working_days": 5},
                    },
                )
            elif b.state == "verified" and r() < 0.8:
                self._apply(session, b, "close", self.taskforce, {"note": "经核验办结销号。"})

    # ------------------------------------------------------------- the days
    def next_day(self) -> None:
        """Advance to the next working day: 09:00 (timers, digests, morning), then 15:00."""
        with self.lock:
            with self.db.unit_of_work(readonly=True) as session:
                cal = self.ctx.calendars.get(session)
            today = cal.local_date(self.ctx.clock.now())
            day = cal.next_working_day(today)
            for hhmm, arrivals in (
                ("09:00", self.rng.randint(4, 8)),
                ("15:00", self.rng.randint(0, 3)),
            ):
                with self.ctx.clock.lock:  # type: ignore[attr-defined]
                    advance_clock(self.db, self.ctx, cal.at_local(day, hhmm))
                    # What every request follows (service/sim_clock.py): store it before
                    # the lock goes, or a request in between would take time back.
                    store_clock(self.db, self.ctx.clock.now())
                with self.db.unit_of_work() as session:
                    enqueue_daily_digests(session, self.ctx)
                    enqueue_monthly_briefing(session, self.ctx)
                    self.new_blockers(session, arrivals)
                    self.act(session)
            self.days += 1

    def prefill(self, days: int) -> None:
        for _ in range(days):
            self.next_day()

    def run(self, day_seconds: float) -> None:
        while not self.stop.wait(day_seconds):
            if self.paused.is_set():
                continue
            try:
                self.next_day()
            except Exception:
                log.exception("demo day failed; trying again next tick")
