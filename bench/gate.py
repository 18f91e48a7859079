"""Actions per second through the engine's one gate, on SQLite and PostgreSQL.

Each action is its own transaction (as over REST): load locked/version-checked, fire,
event with hash chain, timers replaced, outbox rows.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

from bench.common import fresh_database, machine
from service.db import Database
from service.models import Channel, Project, Unit
from workflows import engine
from workflows.clock import ManualClock
from workflows.context import EngineContext

ADMIN = engine.Actor(name="admin", is_admin=True)


def run(kind: str, blockers: int = 300) -> dict[str, float]:
    with fresh_database(kind) as url:
        db = Database(url)
        ctx = EngineContext(
            clock=ManualClock(datetime(2026, 3, 2, 1, 30, tzinfo=UTC)), lock_rows=db.is_postgres
        )
        with db.unit_of_work() as s:
            city = Unit(
                code="xx",
                name="市",
                level="city",
                kind="government",
                path="/1/",
                tags=["city_government"],
            )
            s.add(city)
            s.flush()
            s.add(
                Unit(
                    code="zb",
                    name="综合专班",
                    level="city",
                    kind="taskforce",
                    parent_id=city.id,
                    path="/1/2/",
                    tags=["general_taskforce"],
                )
            )
            county = Unit(
                code="wy",
                name="县",
                level="county",
                kind="government",
                parent_id=city.id,
                path="/1/3/",
            )
            s.add(county)
            s.flush()
            s.add(
                Channel(unit_id=county.id, kind="webhook", url="http://127.0.0.1:9/x", secret="s")
            )
            project = Project(code="P", name="P", category="省市重点", county_unit_id=county.id)
            s.add(project)
            s.flush()
            pid = project.id
        ids = []
        for i in range(blockers):
            with db.unit_of_work() as s:
                ids.append(
                    engine.create_blocker(
                        s, ctx, ADMIN, {"project_id": pid, "title": f"b{i}", "category": "用地"}
                    ).id
                )
        plan = [
            ("assign", {"unit": "wy", "deadline": {"working_days": 10}}),
            ("acknowledge", {}),
            ("feedback", {"note": "进展"}),
            ("feedback", {"note": "进展"}),
            ("report_resolved", {"note": "办结"}),
        ]
        start = time.perf_counter()
        count = 0
        for action, payload in plan:
            for bid in ids:
                with db.unit_of_work() as s:
                    engine.apply(s, ctx, bid, action, ADMIN, payload)
                count += 1
        elapsed = time.perf_counter() - start
        db.dispose()
        return {"actions": count, "seconds": elapsed, "per_second": count / elapsed}


def main() -> None:
    print(f"# gate throughput ({machine()})")
    for kind in ("sqlite", "postgres"):
        r = run(kind)
        print(
            f"gate {kind:8s}: {r['actions']} actions in {r['seconds']:.2f} s = {r['per_second']:.0f} actions/s "
            "(one transaction each, single client)"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
