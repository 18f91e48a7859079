"""Signed webhooks through the dispatcher: outages, retries, crashes, the two clocks."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest

from notifiers.claims import LOST, requeue_many
from notifiers.dispatcher import requeue
from notifiers.ratelimit import IN_FLIGHT
from notifiers.sender import Sender
from service.models import Channel, Notification, NotificationAttempt
from service.models.types import utcnow
from tests.notifiers.fakes import WebhookReceiver
from tests.notifiers.helpers import (
    BUSINESS_NOW,
    attempts,
    blocker_context,
    create_channel,
    create_notifications,
    drain,
    make_dispatcher,
    rows,
)


@pytest.fixture
def hook(db, receiver) -> int:
    return create_channel(db, "webhook", receiver.url, secret="hook-secret")


def test_delivery_is_signed_and_carries_the_event(db, clock, receiver, hook):
    body = {"blocker_id": 9, "action": "escalate", "state": "deadline", "seq": 4, "名称": "滨江"}
    (nid,) = create_notifications(
        db, hook, 1, kind="webhook", event_type="blocker.escalated", context=body
    )
    assert make_dispatcher(db, clock).dispatch_once() == 1
    (row,) = rows(db, [nid])
    assert row.status == "sent" and row.sent_at == clock()
    assert receiver.deliveries == [row.delivery_id]
    assert receiver.bodies[row.delivery_id] == {"type": "blocker.escalated", **body}
    assert receiver.events[row.delivery_id] == "blocker.escalated"
    assert receiver.rejected == 0


def test_receiver_down_for_a_while_then_back_gets_everything_once(db, clock, receiver, hook):
    ids = create_notifications(db, hook, 30, kind="webhook", event_type="blocker.assign")
    dispatcher = make_dispatcher(db, clock)

    receiver.go_down("refuse")
    assert dispatcher.dispatch_once() == 30
    assert {r.status for r in rows(db, ids)} == {"failed"}
    assert all("ConnectError" in r.last_error for r in rows(db, ids))
    assert dispatcher.dispatch_once() == 0  # backoff: nothing is due yet

    receiver.come_back()
    receiver.go_down("503")
    clock.advance(60)
    assert dispatcher.dispatch_once() == 30
    assert all(r.status == "failed" and "HTTP 503" in r.last_error for r in rows(db, ids)), [
        r.last_error for r in rows(db, ids)
    ][:5]

    receiver.come_back()
    clock.advance(120)
    drain(dispatcher, clock, step_s=30)

    delivered = [r.delivery_id for r in rows(db, ids)]
    assert sorted(receiver.deliveries) == sorted(delivered)
    assert receiver.duplicates == 0
    for row in rows(db, ids):
        assert row.status == "sent" and row.attempts == 3 and row.last_error is None
        assert [a.ok for a in attempts(db, row.id)] == [False, False, True]


def test_crash_between_send_and_mark_resends_the_same_delivery(db, clock, receiver, hook):
    (nid,) = create_notifications(db, hook, 1, kind="webhook")
    dispatcher = make_dispatcher(db, clock)

    def crash(results):
        raise RuntimeError("killed after sending, before marking")

    dispatcher._record_all = crash  # the process dies between the POST and the UPDATE
    with pytest.raises(RuntimeError):
        dispatcher.dispatch_once()
    (row,) = rows(db, [nid])
    assert row.status == "pending"
    assert receiver.deliveries == [row.delivery_id]

    survivor = make_dispatcher(db, clock)  # another process, while the lease holds
    assert survivor.dispatch_once() == 0
    clock.advance(59)
    assert survivor.dispatch_once() == 0
    assert len(receiver.deliveries) == 1

    clock.advance(2)  # the 60 s lease has run out
    assert survivor.dispatch_once() == 1
    assert receiver.deliveries == [row.delivery_id, row.delivery_id]  # same id: dedupable
    (row,) = rows(db, [nid])
    assert row.status == "sent"
    lost, ok = attempts(db, nid)
    assert lost.error == LOST and not lost.ok
    assert ok.ok and ok.error is None


def test_retry_after_is_honoured(db, clock, receiver, hook):
    receiver.script = [(429, "120")]
    (nid,) = create_notifications(db, hook, 1, kind="webhook")
    dispatcher = make_dispatcher(db, clock)
    dispatcher.dispatch_once()
    (row,) = rows(db, [nid])
    assert row.status == "failed" and "HTTP 429" in row.last_error
    assert row.not_before >= clock() + timedelta(seconds=120)
    clock.advance(119)
    assert dispatcher.dispatch_once() == 0
    clock.advance(2)
    assert dispatcher.dispatch_once() == 1
    assert rows(db, [nid])[0].status == "sent"


def test_backoff_grows_exponentially_with_jitter(db, clock, receiver, hook):
    receiver.go_down("503")
    (nid,) = create_notifications(db, hook, 1, kind="webhook")
    dispatcher = make_dispatcher(db, clock, backoff_base_s=30, max_attempts=20)
    delays = []
    for _ in range(6):
        dispatcher.dispatch_once()
        (row,) = rows(db, [nid])
        delays.append((row.not_before - clock()).total_seconds())
        clock.advance(delays[-1])
    for n, delay in enumerate(delays):
        ceiling = min(3600, 30 * 2**n)
        assert ceiling / 2 <= delay <= ceiling
    assert delays[-1] > delays[0] * 8


@pytest.mark.parametrize(
    ("status", "why"), [(400, "HTTP 400"), (401, "HTTP 401"), (302, "HTTP 302")]
)
def test_permanent_http_errors_go_dead(db, clock, receiver, hook, status, why):
    receiver.script = [status]
    (nid,) = create_notifications(db, hook, 1, kind="webhook")
    make_dispatcher(db, clock).dispatch_once()
    (row,) = rows(db, [nid])
    assert row.status == "dead" and why in row.last_error
    assert attempts(db, nid)[0].status_code == status


def test_bad_signature_secret_is_dead(db, clock, receiver):
    hook = create_channel(db, "webhook", receiver.url, secret="not-the-receivers-secret")
    (nid,) = create_notifications(db, hook, 1, kind="webhook")
    make_dispatcher(db, clock).dispatch_once()
    assert receiver.rejected == 1
    assert rows(db, [nid])[0].status == "dead"


def test_attempts_run_out(db, clock, receiver, hook):
    receiver.go_down("503")
    (nid,) = create_notifications(db, hook, 1, kind="webhook")
    dispatcher = make_dispatcher(db, clock, max_attempts=3)
    for _ in range(3):
        dispatcher.dispatch_once()
        clock.advance(3600)
    (row,) = rows(db, [nid])
    assert row.status == "dead" and row.attempts == 3
    assert "HTTP 503" in row.last_error and "gave up after 3 attempts" in row.last_error


def test_requeue_sends_a_dead_row_again(db, clock, receiver, hook):
    receiver.script = [400]
    (nid,) = create_notifications(db, hook, 1, kind="webhook")
    dispatcher = make_dispatcher(db, clock)
    dispatcher.dispatch_once()
    assert rows(db, [nid])[0].status == "dead"

    with db.unit_of_work() as s:
        row = requeue(s, nid, now=clock())
        assert row.status == "failed" and row.attempts == 0
    assert dispatcher.dispatch_once() == 1
    (row,) = rows(db, [nid])
    assert row.status == "sent" and receiver.deliveries == [row.delivery_id]

    with db.unit_of_work() as s, pytest.raises(ValueError):
        requeue(s, nid)
    with db.unit_of_work() as s, pytest.raises(LookupError):
        requeue(s, 999)


def test_requeue_many_skips_a_row_on_the_wire_and_pending_rows(db, clock, receiver, hook):
    receiver.script = [400, 400, 400]
    dead = create_notifications(db, hook, 3, kind="webhook")
    make_dispatcher(db, clock).dispatch_once()
    assert [r.status for r in rows(db, dead)] == ["dead"] * 3
    waiting = create_notifications(db, hook, 1, kind="webhook")[0]
    with db.unit_of_work() as s:  # a manual retry of the first is being sent right now
        s.get(Notification, dead[0]).status = "failed"
        s.add(NotificationAttempt(notification_id=dead[0], at=utcnow(), error=IN_FLIGHT))
    with db.unit_of_work() as s:
        count = requeue_many(s, Notification.channel_id == hook, now=clock())
    assert count == 2
    states = {r.id: (r.status, r.attempts) for r in rows(db, [*dead, waiting])}
    assert states == {dead[0]: ("failed", 1), dead[1]: ("failed", 0), dead[2]: ("failed", 0),
                      waiting: ("pending", 0)}


def test_pending_rows_follow_business_time_and_retries_follow_real_time(db, clock, receiver, hook):
    later = create_notifications(
        db, hook, 1, kind="webhook", not_before=BUSINESS_NOW + timedelta(hours=1)
    )[0]
    retrying = create_notifications(db, hook, 1, kind="webhook")[0]
    with db.unit_of_work() as s:  # failed earlier; its backoff is on the real clock
        row = s.get(Notification, retrying)
        row.status, row.attempts, row.not_before = "failed", 1, clock() + timedelta(seconds=30)
        s.add(row)

    business = {"now": BUSINESS_NOW}
    dispatcher = make_dispatcher(db, clock, business_now=lambda: business["now"])
    clock.advance(2 * 86400)  # real time runs on; the simulation clock stands still
    assert dispatcher.dispatch_once() == 1
    assert [r.status for r in rows(db, [later, retrying])] == ["pending", "sent"]

    business["now"] = BUSINESS_NOW + timedelta(hours=1)  # office opens in the simulation
    assert dispatcher.dispatch_once() == 1
    assert rows(db, [later])[0].status == "sent"


def test_template_rows_on_a_webhook_channel_post_their_context(db, clock, receiver, hook):
    context = blocker_context(3)
    (nid,) = create_notifications(
        db, hook, 1, kind="assigned", event_type="blocker.assigned", context=context
    )
    make_dispatcher(db, clock).dispatch_once()
    (row,) = rows(db, [nid])
    assert json.dumps(receiver.bodies[row.delivery_id], sort_keys=True) == json.dumps(
        {"type": "blocker.assigned", **context}, sort_keys=True
    )


def test_unknown_template_on_a_chat_channel_is_dead(db, clock, wecom):
    channel = create_channel(db, "wecom", wecom.url("good-key"))
    (nid,) = create_notifications(db, channel, 1, kind="no_such_template")
    make_dispatcher(db, clock).dispatch_once()
    (row,) = rows(db, [nid])
    assert row.status == "dead" and "no template" in row.last_error
    assert wecom.hits == 0


def test_disabled_channel_rows_are_dead(db, clock, receiver, hook):
    with db.unit_of_work() as s:
        channel = s.get(Channel, hook)
        channel.enabled = False
        s.add(channel)
    (nid,) = create_notifications(db, hook, 1, kind="webhook")
    make_dispatcher(db, clock).dispatch_once()
    assert rows(db, [nid])[0].status == "dead" and "disabled" in rows(db, [nid])[0].last_error
    assert receiver.hits == 0
    assert attempts(db, nid)[0].error != IN_FLIGHT


def test_run_forever_delivers_and_stops(db, clock, receiver, hook):
    ids = create_notifications(db, hook, 3, kind="webhook")
    stop = threading.Event()
    dispatcher = make_dispatcher(db, clock)
    thread = threading.Thread(target=dispatcher.run_forever, args=(stop, 0.01))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while len(receiver.deliveries) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert all(r.status == "sent" for r in rows(db, ids))


@pytest.mark.parametrize("proxied", [False, True])
def test_a_proxy_from_the_environment_is_used_when_trust_env(
    db, clock, receiver, hook, monkeypatch, proxied
):
    """Government intranets reach the platforms through an HTTP proxy: with ``trust_env``
    and ``HTTP_PROXY`` set, the message goes to the proxy (which here accepts it itself);
    without, straight to the receiver on the sender's own transport."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    with WebhookReceiver("hook-secret", clock=clock.time) as proxy:
        if proxied:
            monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
        (nid,) = create_notifications(db, hook, 1, kind="webhook")
        with make_dispatcher(db, clock, trust_env=True) as dispatcher:
            assert dispatcher.dispatch_once() == 1
        (row,) = rows(db, [nid])
        assert row.status == "sent"
        via, direct = (proxy, receiver) if proxied else (receiver, proxy)
        assert via.deliveries == [row.delivery_id]
        assert direct.hits == 0


def test_no_proxy_alone_names_no_proxy(monkeypatch):
    """Servers often set NO_PROXY without any proxy; that must not route every message
    through the slower client path."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert Sender(workers=1, timeout_s=1, may_send=lambda job: True)._proxied is False
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert Sender(workers=1, timeout_s=1, may_send=lambda job: True)._proxied is True
    assert (
        Sender(workers=1, timeout_s=1, may_send=lambda job: True, trust_env=False)._proxied is False
    )
