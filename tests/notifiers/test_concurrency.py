"""Several dispatchers on one database: every delivery once, robots within their limit."""

from __future__ import annotations

import threading

import pytest

from tests.notifiers.helpers import create_channel, create_notifications, make_dispatcher, rows


def run_together(dispatchers, clock, rounds: int = 40) -> None:
    errors: list[BaseException] = []

    def work(dispatcher):
        try:
            for _ in range(rounds):
                dispatcher.dispatch_once(batch=10)
        except BaseException as exc:  # surface it in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(d,)) for d in dispatchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors


@pytest.mark.postgres
def test_parallel_dispatchers_deliver_each_row_once(any_db, clock, receiver):
    db = any_db
    channels = [create_channel(db, "webhook", receiver.url, secret="hook-secret") for _ in range(3)]
    ids = [i for c in channels for i in create_notifications(db, c, 20, kind="webhook")]
    dispatchers = [make_dispatcher(db, clock) for _ in range(4)]
    run_together(dispatchers, clock)
    assert all(r.status == "sent" and r.attempts == 1 for r in rows(db, ids))
    assert receiver.duplicates == 0 and len(receiver.deliveries) == 60


@pytest.mark.postgres
def test_parallel_dispatchers_share_the_robot_rate_limit(any_db, clock, wecom):
    db = any_db
    channel = create_channel(db, "wecom", wecom.url("good-key"))
    ids = create_notifications(db, channel, 60)
    dispatchers = [make_dispatcher(db, clock) for _ in range(3)]
    # Batches of 10 from three processes at once: without the shared budget they
    # would send 10 single messages each, well past 20 in the same minute.
    run_together(dispatchers, clock, rounds=5)
    assert wecom.errors == []
    assert len(wecom.messages) <= 20
    clock.advance(61)
    run_together(dispatchers, clock, rounds=10)
    assert wecom.errors == []
    assert all(r.status == "sent" for r in rows(db, ids))
