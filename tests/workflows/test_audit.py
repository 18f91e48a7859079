"""The timeline is tamper-evident: edits, deletions and reordering are all caught."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import select

from service.cli import main as cli_main
from service.db import Database
from service.models import Blocker, Event, Project, Unit
from workflows.audit import append_event, verify_all


def _seed(db: Database, blockers: int, events_each: int) -> None:
    t0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    with db.unit_of_work() as session:
        unit = Unit(code="c", name="c", level="city", kind="government", path="/1/")
        session.add(unit)
        session.flush()
        project = Project(code="p", name="p", category="x", county_unit_id=unit.id)
        session.add(project)
        session.flush()
        for b in range(blockers):
            blocker = Blocker(project_id=project.id, title=f"b{b}", category="用地")
            session.add(blocker)
            session.flush()
            for i in range(events_each):
                append_event(
                    session,
                    blocker,
                    at=t0 + timedelta(minutes=i),
                    actor="admin",
                    action=f"a{i}",
                    state_before="collected",
                    state_after="collected",
                    payload={"i": i, "注": "中文"},
                )
            if b % 200 == 0:
                session.flush()


def _broken(db: Database) -> list[str]:
    with db.unit_of_work(readonly=True) as session:
        return [str(x) for x in verify_all(session)]


def test_clean_chains_verify(db_url):
    db = Database(db_url)
    _seed(db, 3, 5)
    assert _broken(db) == []
    db.dispose()


@pytest.mark.parametrize("tamper", ["edit", "delete_middle", "delete_last", "reorder"])
def test_tampering_is_caught_on_sqlite(sqlite_url, tamper):
    db = Database(sqlite_url)
    _seed(db, 2, 5)
    with db.unit_of_work() as session:
        if tamper == "edit":
            session.execute(
                text("UPDATE events SET payload = '{\"i\": 99}' WHERE blocker_id = 2 AND seq = 3")
            )
        elif tamper == "delete_middle":
            session.execute(text("DELETE FROM events WHERE blocker_id = 2 AND seq = 3"))
        elif tamper == "delete_last":
            session.execute(text("DELETE FROM events WHERE blocker_id = 2 AND seq = 5"))
        else:
            session.execute(text("UPDATE events SET seq = 100 WHERE blocker_id = 2 AND seq = 2"))
            session.execute(text("UPDATE events SET seq = 2 WHERE blocker_id = 2 AND seq = 3"))
            session.execute(text("UPDATE events SET seq = 3 WHERE blocker_id = 2 AND seq = 100"))
    broken = _broken(db)
    assert len(broken) == 1 and broken[0].startswith("blocker 2, event #")
    expected = {"edit": "#3", "delete_middle": "#3", "delete_last": "#5", "reorder": "#2"}[tamper]
    assert expected in broken[0]
    db.dispose()


def test_postgres_trigger_rejects_update_and_delete(pg_url):
    db = Database(pg_url)
    _seed(db, 1, 3)
    for statement in ("UPDATE events SET actor = 'x'", "DELETE FROM events"):
        with pytest.raises(DBAPIError, match="append-only"), db.unit_of_work() as session:
            session.execute(text(statement))
    with db.unit_of_work(readonly=True) as session:
        assert len(list(session.exec(select(Event)))) == 3
    db.dispose()


def test_audit_verify_command(sqlite_url, monkeypatch, capsys):
    db = Database(sqlite_url)
    _seed(db, 2, 3)
    monkeypatch.setenv("DUBAN_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("DUBAN_ADMIN_KEY", "x" * 20)
    assert cli_main(["audit", "verify"]) == 0
    with db.unit_of_work() as session:
        session.execute(
            text("UPDATE events SET actor = 'mallory' WHERE blocker_id = 1 AND seq = 2")
        )
    assert cli_main(["audit", "verify"]) == 1
    assert "blocker 1, event #2" in capsys.readouterr().out
    db.dispose()


@pytest.mark.slow
def test_100k_clean_events_verify_without_false_alarm(sqlite_url):
    db = Database(sqlite_url)
    _seed(db, 1000, 100)
    with db.unit_of_work(readonly=True) as session:
        assert session.execute(text("SELECT count(*) FROM events")).scalar_one() == 100_000
    assert _broken(db) == []
    db.dispose()
