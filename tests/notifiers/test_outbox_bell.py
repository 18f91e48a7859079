"""The outbox bell: a commit that writes outbox rows wakes the idle dispatcher — in this
process directly, from other processes through PostgreSQL's NOTIFY — so a message goes out
as its change commits rather than at the next poll."""

from __future__ import annotations

import threading
import uuid

import pytest

from notifiers.claims import requeue
from notifiers.wakeup import OutboxListener
from service.db import Database
from service.models import Notification
from tests.notifiers.helpers import (
    BUSINESS_NOW,
    blocker_context,
    create_channel,
    create_notifications,
    make_dispatcher,
    rows,
)
from tests.notifiers.test_pipeline import until
from workflows.world import World

POLL_S = 120.0  # far longer than any wait below: only the bell can explain a prompt send


def test_an_idle_dispatcher_sends_a_row_as_it_is_committed(db, clock, receiver):
    channel = create_channel(db, "webhook", receiver.url, secret="hook-secret")
    _idle_dispatcher_sends_at_once(db, db, channel, clock, receiver)


@pytest.mark.postgres
def test_another_process_commit_wakes_the_dispatcher_through_notify(pg_url, clock, receiver):
    """Two `Database` objects are two processes' engines and bells: only the NOTIFY of the
    writer's transaction can reach the dispatcher's bell."""
    writer, own = Database(pg_url), Database(pg_url)
    try:
        channel = create_channel(writer, "webhook", receiver.url, secret="hook-secret")
        _idle_dispatcher_sends_at_once(writer, own, channel, clock, receiver)
    finally:
        writer.dispose()
        own.dispose()


def _idle_dispatcher_sends_at_once(writer, own, channel, clock, receiver) -> None:
    """``own``'s dispatcher goes idle with a long poll; a row committed through ``writer``
    is sent well before that poll comes round."""
    dispatcher = make_dispatcher(own, clock)
    idle = threading.Event()
    real_idle = dispatcher._idle

    def noting_idle(stop_event, seconds):
        idle.set()
        real_idle(stop_event, seconds)

    dispatcher._idle = noting_idle
    stop = threading.Event()
    loop = threading.Thread(target=dispatcher.run_forever, args=(stop, POLL_S))
    loop.start()
    try:
        assert idle.wait(30), "the dispatcher never went idle"
        (nid,) = create_notifications(writer, channel, 1, kind="webhook")
        until(lambda: rows(own, [nid])[0].status == "sent", timeout_s=30)
    finally:
        stop.set()
        loop.join(timeout=10)
    assert not loop.is_alive(), "an idle dispatcher must notice the stop within its slice"
    assert receiver.deliveries == [rows(own, [nid])[0].delivery_id]
    dispatcher.close()


def _bulk_row(channel_id: int) -> dict:
    return {
        "blocker_id": None,
        "channel_id": channel_id,
        "kind": "deadline_reminder",
        "event_type": "blocker.remind_deadline",
        "delivery_id": uuid.uuid4().hex,
        "status": "pending",
        "urgent": False,
        "attempts": 0,
        "mentions": [],
        "context": blocker_context(1),
        "not_before": BUSINESS_NOW,
        "created_at": BUSINESS_NOW,
    }


def test_the_bell_rings_for_orm_bulk_and_requeued_rows_only_once_committed(db, receiver):
    channel = create_channel(db, "webhook", receiver.url, secret="hook-secret")
    bell = db.outbox_bell
    assert not bell.is_set()  # creating the channel wrote no outbox row

    create_notifications(db, channel, 1, kind="webhook")  # the ORM path
    assert bell.is_set()
    bell.clear()

    with db.unit_of_work() as session:  # the sweep's set-wise path: no ORM flush
        world = World(session, bulk=True)
        world.add(Notification, _bulk_row(channel))
        world.insert_collected()
        assert not bell.is_set(), "rung before the commit: the dispatcher would find nothing"
    assert bell.is_set()
    bell.clear()

    nid = rows(db)[0].id
    with db.unit_of_work() as session:  # given up on (a pending row's retry changes nothing)
        session.get(Notification, nid).status = "dead"
    bell.clear()
    with db.unit_of_work() as session:
        requeue(session, nid)
    assert bell.is_set()
    bell.clear()

    with pytest.raises(RuntimeError), db.unit_of_work() as session:
        session.add(Notification(**_bulk_row(channel)))
        session.flush()
        raise RuntimeError("rolled back")
    with db.unit_of_work() as session:  # a later commit without outbox rows
        session.get(Notification, nid)
    assert not bell.is_set(), "a rolled-back outbox row must not ring on a later commit"


@pytest.mark.postgres
def test_set_wise_outbox_rows_notify_other_processes(pg_url, receiver):
    writer, own = Database(pg_url), Database(pg_url)
    listener = OutboxListener.start_for(own)
    try:
        assert listener is not None and listener.listening.wait(30)
        channel = create_channel(writer, "webhook", receiver.url, secret="hook-secret")
        own.outbox_bell.clear()  # rung once as the listener connected
        with writer.unit_of_work() as session:
            world = World(session, bulk=True)
            world.add(Notification, _bulk_row(channel))
            world.insert_collected()
        assert own.outbox_bell.wait(30), "no NOTIFY reached the other process's bell"
    finally:
        listener.stop()
        writer.dispose()
        own.dispose()


@pytest.mark.postgres
def test_a_rolled_back_savepoint_does_not_swallow_the_next_notify(pg_url, receiver):
    """The sweep fires each gated timer in a savepoint; one rolled back takes its NOTIFY
    with it, so the outbox rows written after it must notify again."""
    writer, own = Database(pg_url), Database(pg_url)
    listener = OutboxListener.start_for(own)
    try:
        assert listener is not None and listener.listening.wait(30)
        channel = create_channel(writer, "webhook", receiver.url, secret="hook-secret")
        own.outbox_bell.clear()
        with writer.unit_of_work() as session:
            with pytest.raises(RuntimeError), session.begin_nested():
                session.add(Notification(**_bulk_row(channel)))
                session.flush()  # NOTIFY, inside the savepoint
                raise RuntimeError("this timer no longer applies")
            session.add(Notification(**_bulk_row(channel)))
        assert own.outbox_bell.wait(30), "the committed row's NOTIFY was lost"
    finally:
        listener.stop()
        writer.dispose()
        own.dispose()


def test_sqlite_has_no_listener(db):
    assert OutboxListener.start_for(db) is None
