"""A burst's batches are found through indexes, never by reading or sorting everything due.

When 100,000 deadlines fall due at the same 23:59:59, the sweep claims them a batch at a
time. On PostgreSQL, with the pending timers indexed on `due_at` alone, each claim read
and sorted every due timer (79 ms a batch), and cancelling a batch's other timers scanned
the whole table: both grow with the burst, so the burst grew with its square.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from service.db import Database, among, among_selected
from service.models import Blocker, Project, Timer, Unit
from workflows.batch import TIMERS, claim_rows
from workflows.context import EngineContext

DUE = datetime(2026, 3, 17, 15, 59, 59, tzinfo=UTC)
BLOCKERS = 3000


def _fill(db: Database) -> None:
    """3,000 supervised blockers, each with a deadline due at the same moment and a later
    feedback timer; statistics gathered as autovacuum would."""
    with db.unit_of_work() as session:
        unit = Unit(code="wy", name="原阳县人民政府", level="county", kind="government", path="/")
        session.add(unit)
        session.flush()
        project = Project(code="P1", name="项目P1", category="省市重点", county_unit_id=unit.id)
        session.add(project)
        session.flush()
        session.add_all(
            Blocker(project_id=project.id, title=f"阻点{i}", category="用地", state="supervised",
                    unit_id=unit.id, created_at=DUE, updated_at=DUE)
            for i in range(BLOCKERS)
        )  # fmt: skip
        session.flush()
        ids = session.scalars(select(Blocker.id)).all()
        session.add_all(
            Timer(blocker_id=b, kind=kind, step="0.1", due_at=at, payload={})
            for b in ids
            for kind, at in (("deadline", DUE), ("feedback_due", DUE + timedelta(days=7)))
        )
    with db.write_engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()


def _plan(session, query) -> str:
    conn = session.connection()
    sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN" if conn.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN"
    return "\n".join(str(row[-1]) for row in conn.exec_driver_sql(f"{explain} {sql}"))


def test_a_claim_reads_its_batch_in_due_order_without_sorting(db_url) -> None:
    db = Database(db_url)
    try:
        _fill(db)
        ctx = EngineContext(lock_rows=db.is_postgres)
        with db.unit_of_work() as session:
            rows = claim_rows(session, ctx, DUE, 500)
            assert len(rows) == 500 and {r.kind for r in rows} == {"deadline"}
            assert [r.id for r in rows] == sorted(r.id for r in rows)
            query = (
                select(TIMERS)
                .where(TIMERS.c.status == "pending", TIMERS.c.due_at <= DUE)
                .order_by(TIMERS.c.due_at, TIMERS.c.id)
                .limit(500)
            )
            plan = _plan(session, query)
        assert "ix_timers_pending_due" in plan, plan
        assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan
    finally:
        db.dispose()


def test_a_batch_cancels_its_timers_through_the_key_not_a_scan(db_url) -> None:
    db = Database(db_url)
    try:
        _fill(db)
        with db.unit_of_work() as session:
            ids = session.scalars(select(Blocker.id).order_by(Blocker.id).limit(100)).all()
            pending = select(TIMERS.c.id).where(
                among(session, TIMERS.c.blocker_id, ids), TIMERS.c.status == "pending"
            )
            statement = (
                update(TIMERS)
                .where(among_selected(session, TIMERS.c.id, pending))
                .values(status="cancelled")
            )
            plan = _plan(session, statement)
            # The subquery may read a small table whole; the rows updated are found by key.
            assert not re.search(r"Seq Scan on timers\s+\(", plan), plan
            session.execute(statement)
            cancelled = select(TIMERS.c.blocker_id).where(TIMERS.c.status == "cancelled")
            assert sorted(session.scalars(cancelled)) == sorted(ids * 2)
            assert session.scalar(select(func.count()).where(TIMERS.c.status == "pending")) == 5800
    finally:
        db.dispose()
