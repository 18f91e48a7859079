"""SQLite writers in one process queue on the writer gate; no path leaves it taken."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import PendingRollbackError

from service.db import Database
from workflows.calendar_store import CalendarStore


def _gate_is_free(db: Database) -> bool:
    """A write transaction can start and finish at once (the gate would time out if held)."""
    with db.unit_of_work() as session:
        session.execute(text("SELECT 1"))
    return True


def test_a_writer_that_fails_gives_the_gate_back(sqlite_url):
    """(Many writers queueing: test_persistence's concurrent writers run through the gate.)"""
    db = Database(sqlite_url)
    with pytest.raises(ValueError), db.unit_of_work() as session:
        session.execute(text("CREATE TABLE t (n INTEGER)"))
        raise ValueError("the handler failed after writing")
    assert _gate_is_free(db)
    db.dispose()


def test_an_invalidated_connection_gives_the_gate_back(sqlite_url):
    db = Database(sqlite_url)
    with pytest.raises(PendingRollbackError), db.unit_of_work() as session:
        session.execute(text("SELECT 1"))
        session.connection().invalidate()  # as after a lost connection; commit then fails
    assert _gate_is_free(db)
    db.dispose()


def test_calendar_reload_does_not_deadlock_with_the_writer(sqlite_url):
    """The sweep reloads the calendar in a write transaction while a request that holds the
    write lock needs the calendar too; the store must not hold its lock across the query."""
    db = Database(sqlite_url)
    store = CalendarStore(ttl_s=0)  # every get reloads
    waiting_for_writer = threading.Event()
    request_thread = threading.current_thread()

    @event.listens_for(db.write_engine.pool, "checkout")
    def _checked_out(*_args) -> None:
        if threading.current_thread() is not request_thread:
            waiting_for_writer.set()

    results: list[object] = []

    def sweep() -> None:
        with db.unit_of_work() as session:
            results.append(store.get(session))

    with db.unit_of_work() as request_session:
        request_session.execute(text("SELECT 1"))  # the request now holds the write lock
        sweeper_thread = threading.Thread(target=sweep)
        sweeper_thread.start()
        assert waiting_for_writer.wait(timeout=10)
        assert store.get(request_session) is not None  # would wait for the sweep's lock
    sweeper_thread.join(timeout=20)
    assert not sweeper_thread.is_alive()
    assert len(results) == 1
    db.dispose()
