"""A platform that takes the message but answers too late, or trickles its answer: a chat
group never gets the message twice, and no answer holds a sending thread past the timeout."""

from __future__ import annotations

from tests.notifiers.helpers import (
    attempts,
    create_channel,
    create_notifications,
    make_dispatcher,
    rows,
)


def test_a_chat_message_answered_too_late_is_not_sent_again(db, clock, wecom, caplog):
    wecom.answer_after_s = 0.6  # the robot posts it to the group, then answers late
    channel = create_channel(db, "wecom", wecom.url("good-key"))
    (nid,) = create_notifications(db, channel, 1)
    dispatcher = make_dispatcher(db, clock, timeout_s=0.2)
    with caplog.at_level("WARNING"):
        dispatcher.dispatch_once()
    (row,) = rows(db, [nid])
    assert row.status == "dead"
    assert "ReadTimeout" in row.last_error and "not sent again" in row.last_error
    # The operator learns of it from the log as well as from the API.
    assert any(
        f"notification {nid} " in r.getMessage() and "dead" in r.getMessage()
        for r in caplog.records
    )
    # Hours later nothing more has gone to the group: it saw the message once.
    wecom.answer_after_s = 0.0
    for _ in range(10):
        clock.advance(3600)
        dispatcher.dispatch_once()
    assert len(wecom.messages) == 1
    assert len(attempts(db, nid)) == 1


def test_a_webhook_answered_too_late_is_retried_with_the_same_delivery_id(db, clock, receiver):
    receiver.answer_after_s = 0.6
    channel = create_channel(db, "webhook", receiver.url, secret="hook-secret")
    (nid,) = create_notifications(db, channel, 1)
    dispatcher = make_dispatcher(db, clock, timeout_s=0.2)
    dispatcher.dispatch_once()
    (row,) = rows(db, [nid])
    assert row.status == "failed" and "ReadTimeout" in row.last_error
    receiver.answer_after_s = 0.0
    clock.advance(3600)
    dispatcher.dispatch_once()
    (row,) = rows(db, [nid])
    assert row.status == "sent"
    # At least once, as the contract says: the receiver dedupes on X-Duban-Delivery.
    assert set(receiver.deliveries) == {row.delivery_id}


def test_a_trickled_answer_ends_at_the_timeout_in_all(db, clock, wecom):
    # ~30 bytes of JSON at 0.05 s a byte: each read well within 0.5 s, the whole not.
    wecom.trickle_s = 0.05
    channel = create_channel(db, "wecom", wecom.url("good-key"))
    (nid,) = create_notifications(db, channel, 1)
    make_dispatcher(db, clock, timeout_s=0.5).dispatch_once()
    (row,) = rows(db, [nid])
    assert row.status == "dead"
    assert "took more than 0.5 s" in row.last_error


def test_a_chat_robot_that_drops_the_connection_after_taking_the_message_gets_it_once(
    db, clock, dingtalk
):
    dingtalk.drop_after_read = True
    channel = create_channel(
        db, "dingtalk", dingtalk.url("good-token"), secret="SECdingtalk-secret"
    )
    (nid,) = create_notifications(db, channel, 1)
    dispatcher = make_dispatcher(db, clock)
    dispatcher.dispatch_once()
    (row,) = rows(db, [nid])
    assert row.status == "dead" and "RemoteProtocolError" in row.last_error
    dingtalk.drop_after_read = False
    clock.advance(3600)
    dispatcher.dispatch_once()
    assert len(dingtalk.messages) == 1


def test_a_chat_message_whose_dispatcher_died_mid_send_is_not_sent_again(
    db, clock, wecom, receiver
):
    group = create_channel(db, "wecom", wecom.url("good-key"))
    hook = create_channel(db, "webhook", receiver.url, secret="hook-secret")
    (chat,) = create_notifications(db, group, 1)
    (machine,) = create_notifications(db, hook, 1)
    gone = make_dispatcher(db, clock)
    jobs, _ = gone._claim(10)  # claimed and (perhaps) sent; then the process died
    assert len(jobs) == 2
    clock.advance(61)  # past the lease
    make_dispatcher(db, clock).dispatch_once()
    chat_row, machine_row = rows(db, [chat, machine])
    assert chat_row.status == "dead" and "not sent again" in chat_row.last_error
    assert wecom.messages == []
    assert machine_row.status == "sent"  # a machine receiver dedupes: at least once
