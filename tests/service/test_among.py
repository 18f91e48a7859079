"""`service.db.among`: a set of ids sent as one parameter, on both databases.

The sweep locks, cancels and marks a whole batch of timers with it; an expanded
``IN (?, ?, …)`` was compiled and parsed again for every batch size, and on SQLite had to be
cut into chunks under the bound-parameter limit.
"""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, Table, event, func, select

from service.db import Database, among
from workflows.outbox import unsent_reminders

IDS = Table("among_ids", MetaData(), Column("id", Integer, primary_key=True))


def test_among_selects_exactly_the_ids_given_with_one_parameter(db_url) -> None:
    db = Database(db_url)
    sent: list[object] = []

    @event.listens_for(db.write_engine, "before_cursor_execute")
    def _record(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if "among_ids" in statement and statement.lstrip().upper().startswith("SELECT"):
            sent.append(parameters)

    try:
        with db.unit_of_work() as session:
            IDS.create(session.connection())
            session.execute(IDS.insert(), [{"id": i} for i in range(1, 5001)])
            wanted = list(range(2, 5001, 2)) + [7, 7, 999_999]  # a repeat, one that is absent
            query = select(func.count()).select_from(IDS).where(among(session, IDS.c.id, wanted))
            assert session.scalar(query) == 2501  # the 2,500 even ids and 7, once each
            none = select(func.count()).select_from(IDS).where(among(session, IDS.c.id, []))
            assert session.scalar(none) == 0
            IDS.drop(session.connection())
    finally:
        db.dispose()
    # 2,503 ids went as one parameter, not 2,503 (over SQLite's old limit of 999).
    assert [len(p) for p in sent] == [1, 1]


def test_unsent_reminders_are_found_through_the_blockers_index_on_sqlite(sqlite_url) -> None:
    """An action reads its blocker's unsent reminders: by the blocker's index, never by
    walking every pending row of the outbox (which SQLite's planner, without statistics,
    preferred: ten times slower for each action with a large outbox held overnight)."""
    db = Database(sqlite_url)
    try:
        with db.unit_of_work() as session:
            for ids in ([5], list(range(1, 501))):
                query = unsent_reminders(session, ids)
                sql = str(query.compile(session.get_bind(), compile_kwargs={"literal_binds": True}))
                plan = [row[3] for row in session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
                assert any("notifications USING INDEX ix_notifications_blocker" in step for step in plan), plan
                assert not any("ix_notifications_status" in step for step in plan), plan
    finally:
        db.dispose()
