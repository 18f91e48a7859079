"""The pipelined loop (``Dispatcher.run_forever``): the next claim is made while the last one
is on the wire and outcomes are written in batches, and every guarantee of the round-by-round
dispatch still holds: once per delivery id, per-channel order, the shared robot budget, and
nothing lost when the process is killed between sending and recording."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from notifiers.dispatcher import Dispatcher
from service.models import Notification, NotificationAttempt
from tests.notifiers.helpers import (
    Clock,
    create_channel,
    create_notifications,
    drain,
    make_dispatcher,
    rows,
)

REPO = Path(__file__).resolve().parents[2]


def until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Wait for a condition the loop brings about (a deadline, not a timing assumption)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the dispatcher loop did not get there"
        time.sleep(0.01)


@contextmanager
def running(*dispatchers: Dispatcher, batch: int = 20) -> Iterator[None]:
    stop = threading.Event()
    loops = [
        threading.Thread(target=d.run_forever, args=(stop, 0.01), kwargs={"batch": batch})
        for d in dispatchers
    ]
    for loop in loops:
        loop.start()
    try:
        yield
    finally:
        stop.set()
        for loop in loops:
            loop.join(timeout=30)
        assert not any(loop.is_alive() for loop in loops)


def all_sent(db) -> bool:
    return all(r.status == "sent" for r in rows(db))


@pytest.mark.postgres
def test_pipelined_dispatchers_deliver_each_row_once(any_db, clock, receiver):
    db = any_db
    channels = [create_channel(db, "webhook", receiver.url, secret="hook-secret") for _ in range(5)]
    ids = [i for c in channels for i in create_notifications(db, c, 40, kind="webhook")]
    dispatchers = [make_dispatcher(db, clock, workers=4) for _ in range(3)]
    with running(*dispatchers):
        until(lambda: all_sent(db))
    assert receiver.duplicates == 0 and len(receiver.deliveries) == len(ids)
    assert all(r.attempts == 1 and r.sent_at == clock() for r in rows(db, ids))


def test_one_channel_gets_its_rows_in_order(db, clock, receiver):
    channel = create_channel(db, "webhook", receiver.url, secret="hook-secret")
    ids = create_notifications(db, channel, 60, kind="webhook")
    with running(make_dispatcher(db, clock), batch=10):
        until(lambda: all_sent(db))
    assert receiver.deliveries == [r.delivery_id for r in rows(db, ids)]


def used_budget(db, channel_id: int, messages: int, clock: Clock) -> None:
    """``messages`` sent to the robot by us 10 s ago (rows and their ok attempts)."""
    with db.unit_of_work() as s:
        for n in range(messages):
            row = Notification(
                channel_id=channel_id,
                kind="deadline_reminder",
                delivery_id=f"earlier-{n}",
                status="sent",
                attempts=1,
            )
            s.add(row)
            s.flush()
            at = clock() - timedelta(seconds=10)
            s.add(NotificationAttempt(notification_id=row.id, at=at, ok=True, status_code=200))


@pytest.mark.postgres
def test_pipelined_dispatchers_share_what_is_left_of_the_robot_budget(any_db, clock, wecom):
    db = any_db
    channel = create_channel(db, "wecom", wecom.url("good-key"))
    used_budget(db, channel, 17, clock)  # 3 messages left in this minute
    ids = create_notifications(db, channel, 60)
    dispatchers = [make_dispatcher(db, clock, workers=2) for _ in range(3)]
    with running(*dispatchers):
        until(lambda: len(wecom.messages) == 3)
    assert len(wecom.messages) == 3 and wecom.errors == []  # digests, not 3 x 3

    clock.advance(61)
    with running(*dispatchers):
        until(lambda: all(r.status == "sent" for r in rows(db, ids)))
    assert wecom.errors == []


CHILD = textwrap.dedent(
    """
    import sys, threading
    from datetime import UTC, datetime
    from notifiers.dispatcher import Dispatcher
    from service.db import Database

    recorded = []

    class Stalling(Dispatcher):
        def _record_all(self, reports):  # the first batch is written, then the writer hangs
            if recorded:
                threading.Event().wait()
            super()._record_all(reports)
            recorded.append(len(reports))

    dispatcher = Stalling(
        Database(sys.argv[1]),
        allowed_hosts=frozenset({"127.0.0.1"}),
        business_now=lambda: datetime(2025, 3, 3, 1, 0, tzinfo=UTC),
        trust_env=False,
        workers=4,
    )
    dispatcher.run_forever(threading.Event(), 0.01, batch=20)
    """
)


def test_kill_9_between_sending_and_recording_loses_nothing(db, receiver):
    channels = [create_channel(db, "webhook", receiver.url, secret="hook-secret") for _ in range(4)]
    ids = [i for c in channels for i in create_notifications(db, c, 25, kind="webhook")]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, db.url],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
    )
    try:
        # The first batch recorded, and more sent that never will be (the writer hangs,
        # so the count of sent rows no longer moves).
        def sent() -> int:
            return sum(r.status == "sent" for r in rows(db))

        until(lambda: 0 < sent() < len(receiver.deliveries))
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    before = list(receiver.deliveries)
    assert 0 < sum(r.status == "sent" for r in rows(db, ids)) < len(before)

    clock = Clock()  # the real clock, moved past the dead process's leases
    clock.advance(61)
    drain(make_dispatcher(db, clock), clock)

    delivered = {r.delivery_id for r in rows(db, ids)}
    assert all(r.status == "sent" for r in rows(db, ids))
    assert set(receiver.deliveries) == delivered  # nothing lost
    resent = len(receiver.deliveries) - len(delivered)
    assert 0 < resent <= len(before)  # the unrecorded ones went again, with the same ids
