"""Migrations produce exactly the models' schema; SQLite writers queue instead of failing."""

from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

import service.models  # noqa: F401
from service import migrations
from service.db import Database
from service.settings import Settings


def test_upgrade_head_matches_models_and_downgrade_base_works(db_url):
    db = Database(db_url)
    try:
        with db.write_engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
        assert diff == [], f"migration and models disagree: {diff}"
        migrations.downgrade(db_url, "base")
        tables = set(inspect(db.write_engine).get_table_names()) - {"alembic_version"}
        assert tables == set()
        migrations.upgrade(db_url)
        assert set(inspect(db.write_engine).get_table_names()) >= set(SQLModel.metadata.tables)
    finally:
        db.dispose()


def test_each_migration_step_downgrades_and_upgrades_again(db_url):
    """A deployed 0001 database upgrades in place: step back one revision at a time and
    forward again; the outbox history index comes and goes with 0002, unit escalations
    (no blocker) with 0003, the events' writing transaction (the feed's order) with 0004,
    a subscription's key with 0005, a rotated key's old secret with 0006, an officer's
    `active` with 0007, the pending timers' index in claim order with 0008."""

    def indexes() -> set[str]:
        inspector = inspect(db.write_engine)
        return {
            index["name"]
            for table in ("notifications", "notification_attempts", "escalations")
            for index in inspector.get_indexes(table)
        }

    def event_tx() -> bool:
        return "tx" in {c["name"] for c in inspect(db.write_engine).get_columns("events")}

    def webhook_owner() -> bool:
        columns = inspect(db.write_engine).get_columns("webhook_subscriptions")
        return "api_key_id" in {c["name"] for c in columns}

    def key_rotation() -> bool:
        columns = inspect(db.write_engine).get_columns("api_keys")
        return {"previous_hash", "previous_until"} <= {c["name"] for c in columns}

    def officer_active() -> bool:
        return "active" in {c["name"] for c in inspect(db.write_engine).get_columns("officers")}

    def claim_order() -> bool:
        timers = {i["name"]: i["column_names"] for i in inspect(db.write_engine).get_indexes("timers")}
        if timers.get("ix_timers_pending_due") == ["due_at", "id"]:
            return "ix_timers_blocker_id" not in timers
        assert timers.get("ix_timers_pending_due") == ["due_at"], timers
        assert "ix_timers_blocker_id" in timers, timers
        return False

    def blocker_optional() -> bool:
        columns = inspect(db.write_engine).get_columns("escalations")
        return next(c for c in columns if c["name"] == "blocker_id")["nullable"]

    db = Database(db_url)
    try:
        assert {"ix_notification_attempts_at", "uq_escalations_unit_step"} <= indexes()
        assert blocker_optional() and event_tx() and webhook_owner() and key_rotation()
        assert officer_active() and claim_order()
        migrations.downgrade(db_url, "0007")
        assert officer_active() and not claim_order()
        migrations.downgrade(db_url, "0006")
        assert key_rotation() and not officer_active()
        migrations.downgrade(db_url, "0005")
        assert webhook_owner() and not key_rotation()
        migrations.downgrade(db_url, "0004")
        assert event_tx() and not webhook_owner()
        migrations.downgrade(db_url, "0003")
        assert not event_tx() and blocker_optional()
        migrations.downgrade(db_url, "0002")
        assert "uq_escalations_unit_step" not in indexes() and not blocker_optional()
        migrations.downgrade(db_url, "0001")
        assert "ix_notification_attempts_at" not in indexes()
        assert "ix_notification_attempts_notification_id" in indexes()
        migrations.upgrade(db_url)
        assert {"ix_notification_attempts_at", "uq_escalations_unit_step"} <= indexes()
        assert blocker_optional() and event_tx() and webhook_owner() and key_rotation()
        assert officer_active() and claim_order()
    finally:
        db.dispose()


def test_sqlite_runs_in_wal_mode_with_busy_timeout(sqlite_url):
    db = Database(sqlite_url)
    with db.write_engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    db.dispose()


def test_concurrent_sqlite_writers_wait_and_lose_no_update(sqlite_url):
    """Read-modify-write from 8 threads: BEGIN IMMEDIATE serialises them, so no increment is lost."""
    db = Database(sqlite_url)
    with db.unit_of_work() as session:
        session.execute(text("CREATE TABLE counter (n INTEGER)"))
        session.execute(text("INSERT INTO counter VALUES (0)"))
    errors: list[Exception] = []

    def work() -> None:
        try:
            for _ in range(25):
                with db.unit_of_work() as session:
                    n = session.execute(text("SELECT n FROM counter")).scalar_one()
                    session.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.unit_of_work(readonly=True) as session:
        assert session.execute(text("SELECT n FROM counter")).scalar_one() == 200
    db.dispose()


def test_unit_of_work_rolls_back_everything_on_error(db_url):
    db = Database(db_url)
    from service.models import Unit

    with pytest.raises(RuntimeError), db.unit_of_work() as session:
        session.add(Unit(code="a", name="a", level="city", kind="government", path="/"))
        session.flush()
        raise RuntimeError("boom")
    with db.unit_of_work(readonly=True) as session:
        assert session.query(Unit).count() == 0
    db.dispose()


def test_production_configuration_without_admin_key_refuses_to_start(monkeypatch):
    monkeypatch.delenv("DUBAN_ADMIN_KEY", raising=False)
    with pytest.raises(ValueError, match="DUBAN_ADMIN_KEY is not set"):
        Settings(database_url="postgresql+psycopg://duban:secret@db.example/duban")
    with pytest.raises(ValueError, match="DUBAN_ADMIN_KEY is not set"):
        Settings(database_url="sqlite:////srv/duban/duban.db")
    # The embedded default (SQLite under ./var) starts without one.
    assert Settings(database_url="sqlite:///./var/duban.db").admin_key is None
    with pytest.raises(ValueError, match="time zone"):
        Settings(timezone="Mars/Olympus", admin_key="x" * 20)
