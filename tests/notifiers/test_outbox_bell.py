"""The outbox bell: a commit that writes outbox rows wakes this process's idle dispatcher,
so a message goes out as its change commits rather than at the next poll."""

from __future__ import annotations

import threading
import uuid

import pytest

from notifiers.claims import requeue
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
    dispatcher = make_dispatcher(db, clock)
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
        (nid,) = create_notifications(db, channel, 1, kind="webhook")
        until(lambda: rows(db, [nid])[0].status == "sent", timeout_s=30)
    finally:
        stop.set()
        loop.join(timeout=10)
    assert not loop.is_alive(), "an idle dispatcher must notice the stop within its slice"
    assert receiver.deliveries == [rows(db, [nid])[0].delivery_id]
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
