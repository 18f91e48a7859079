"""Chat robots through the dispatcher: bursts become digests within 20 a minute, every
officer is @-ed, platform throttling pauses the robot, permanent errors go dead."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from notifiers.dingtalk import DingTalkNotifier
from tests.notifiers.fakes import ChatMessage, WeComRobot
from tests.notifiers.helpers import (
    attempts,
    blocker_context,
    create_channel,
    create_notifications,
    drain,
    make_dispatcher,
    notifiers_on,
    rows,
)

LINK = re.compile(r"/blockers/(\d+)\b")


def officer(n: int) -> str:
    return f"1390000{n % 37:04d}"


def burst(db, channel_id: int, count: int = 200) -> list[int]:
    """``count`` reminders to one group, blocker n @-ing officer(n)."""
    ids = []
    for n in range(1, count + 1):
        context = blocker_context(n)
        ids += create_notifications(db, channel_id, 1, mentions=[officer(n)], context=context)
    return ids


def max_per_rolling_minute(messages: list[ChatMessage]) -> int:
    times = sorted(m.at for m in messages)
    return max((sum(1 for u in times if t <= u < t + 60) for t in times), default=0)


def blockers_in(message: ChatMessage) -> set[int]:
    return {int(n) for n in LINK.findall(message.content)}


def assert_everyone_reached(messages, mentions_of, count: int) -> None:
    """Each blocker arrives in exactly one message, which @-s its officer."""
    seen: dict[int, int] = {}
    for index, message in enumerate(messages):
        for blocker in blockers_in(message):
            assert blocker not in seen, f"blocker {blocker} delivered twice"
            seen[blocker] = index
            assert officer(blocker) in mentions_of(index), f"officer of {blocker} not @-ed"
    assert set(seen) == set(range(1, count + 1))


@pytest.mark.parametrize("platform", ["wecom", "dingtalk"])
def test_burst_of_200_reminders_arrives_as_digests_within_the_limit(
    platform, db, clock, wecom, dingtalk
):
    fake = wecom if platform == "wecom" else dingtalk
    url = wecom.url("good-key") if platform == "wecom" else dingtalk.url("good-token")
    secret = None if platform == "wecom" else "SECdingtalk-secret"
    channel = create_channel(db, platform, url, secret=secret)
    ids = burst(db, channel)
    dispatcher = make_dispatcher(db, clock)

    drain(dispatcher, clock, step_s=1.0)

    assert fake.errors == []  # never 45009 / 130101
    assert max_per_rolling_minute(fake.messages) <= 20
    assert len(fake.messages) < 40  # digests, not 200 messages
    if platform == "wecom":
        assert {m.msgtype for m in fake.messages} == {"text"}  # @ by mobile needs text
        assert all(len(m.content.encode()) <= 2048 for m in fake.messages)

        def mentions_of(i):
            return fake.messages[i].mentions
    else:

        def mentions_of(i):
            return fake.effective[i]  # listed in atMobiles *and* @-ed in the text

    assert_everyone_reached(fake.messages, mentions_of, len(ids))
    for row in rows(db, ids):
        assert row.status == "sent" and row.attempts == 1
        (attempt,) = attempts(db, row.id)
        assert attempt.ok and attempt.status_code == 200


def test_a_daily_digest_or_briefing_in_a_burst_goes_as_its_own_message(db, clock, wecom):
    channel = create_channel(db, "wecom", wecom.url("good-key"))
    ids = burst(db, channel, 30)
    daily = {"items": [blocker_context(901)], "date": "2025-03-03", "unit_name": "滨江县"}
    ids += create_notifications(db, channel, 1, kind="daily_digest", context=daily, mentions=[])
    ids += burst(db, channel, 30)
    briefing = {"month": "2025年2月", "units": 1, "last": None, "rows": [
        {"rank": 1, "unit_id": 1, "name": "滨江县人民政府", "assigned": 1, "overdue": 0,
         "open_blockers": 1, "on_time_rate": "100.0%", "response_rate": "100.0%",
         "satisfaction_rate": "—"}]}
    ids += create_notifications(db, channel, 1, kind="monthly_briefing", context=briefing, mentions=[])
    drain(make_dispatcher(db, clock), clock, step_s=1.0)
    assert all(row.status == "sent" for row in rows(db, ids))
    assert max_per_rolling_minute(wecom.messages) <= 20 and len(wecom.messages) < 30
    alone = [m for m in wecom.messages if "每日督办" in m.content or "月度督办通报" in m.content]
    assert len(alone) == 2
    assert all("第901号" in m.content or "滨江县人民政府" in m.content for m in alone)
    merged = [m for m in wecom.messages if m not in alone]
    assert all("【督办】" not in m.content for m in merged)  # no list inside a list


def test_feishu_burst_keeps_to_five_a_second(db, clock, feishu):
    channel = create_channel(db, "feishu", feishu.url("good-hook"), secret="feishu-secret")
    ids = burst(db, channel, 60)
    dispatcher = make_dispatcher(db, clock)
    drain(dispatcher, clock, step_s=0.5)
    assert feishu.errors == []
    assert all(r.status == "sent" for r in rows(db, ids))
    delivered = set().union(*(blockers_in(m) for m in feishu.messages))
    assert delivered == set(range(1, 61))


def test_a_robots_minute_runs_from_when_messages_arrive_not_from_when_they_were_claimed(db, clock):
    """20 messages claimed at once reach the robot over 2 s (0.1 s each on the wire): the
    next ones wait a minute from those arrivals, which is what the platform counts."""

    class SlowWire(WeComRobot):
        def handle(self, path, query, headers, body):
            clock.advance(0.1)
            return super().handle(path, query, headers, body)

    with SlowWire({"good-key"}, clock=clock.time) as wecom:
        channel = create_channel(db, "wecom", wecom.url("good-key"))
        first = create_notifications(db, channel, 20, mentions=[])
        claimed_at = clock()
        assert make_dispatcher(db, clock).dispatch_once() == 20
        assert clock() - claimed_at >= timedelta(seconds=2)  # the last one arrived 2 s later
        later = create_notifications(db, channel, 20, mentions=[])
        clock.now = claimed_at + timedelta(seconds=60.5)  # a minute after the claim only
        drain(make_dispatcher(db, clock), clock, step_s=0.5)
        assert wecom.errors == []  # never 45009
        assert all(r.status == "sent" for r in rows(db, first + later))
        assert max_per_rolling_minute(wecom.messages) <= 20
        assert min(m.at for m in wecom.messages[20:]) >= max(m.at for m in wecom.messages[:20]) + 60 - 0.1


def test_a_trickle_goes_out_message_by_message(db, clock, wecom):
    channel = create_channel(db, "wecom", wecom.url("good-key"))
    create_notifications(db, channel, 5, mentions=[])
    assert make_dispatcher(db, clock).dispatch_once() == 5
    assert [m.msgtype for m in wecom.messages] == ["markdown"] * 5
    assert all(m.content.startswith("**【到期提醒】") for m in wecom.messages)


def test_wecom_throttling_by_another_sender_pauses_the_robot(db, clock, wecom):
    for _ in range(20):  # another system already used this minute's 20 messages
        wecom.window.add("good-key", clock.time())
    channel = create_channel(db, "wecom", wecom.url("good-key"))
    ids = create_notifications(db, channel, 3)
    dispatcher = make_dispatcher(db, clock)

    assert dispatcher.dispatch_once() == 1  # answered 45009: the other two are held back
    assert wecom.errors == [45009]
    first, *others = rows(db, ids)
    assert first.status == "failed" and "45009" in first.last_error
    assert (first.not_before - clock()).total_seconds() >= 60
    assert [(r.status, len(attempts(db, r.id))) for r in others] == [("pending", 0)] * 2
    clock.advance(30)
    assert dispatcher.dispatch_once() == 0 and wecom.hits == 1  # paused, not hammering
    clock.advance(31)
    assert dispatcher.dispatch_once() == 3
    assert all(r.status == "sent" for r in rows(db, ids))


def test_dingtalk_blocked_robot_waits_ten_minutes(db, clock, dingtalk):
    dingtalk.blocked_until["good-token"] = clock.time() + 600
    channel = create_channel(
        db, "dingtalk", dingtalk.url("good-token"), secret="SECdingtalk-secret"
    )
    (nid,) = create_notifications(db, channel, 1)
    dispatcher = make_dispatcher(db, clock)
    dispatcher.dispatch_once()
    (row,) = rows(db, [nid])
    assert row.status == "failed" and "130101" in row.last_error
    assert (row.not_before - clock()).total_seconds() >= 600
    create_notifications(db, channel, 1)  # a new row for the same robot must wait too
    clock.advance(300)
    assert dispatcher.dispatch_once() == 0 and dingtalk.hits == 1
    clock.advance(301)
    drain(dispatcher, clock)
    assert len(dingtalk.messages) == 2 and dingtalk.errors == [130101]
    assert all(r.status == "sent" for r in rows(db))


@pytest.mark.parametrize(
    ("kind", "target", "secret", "code"),
    [
        ("wecom", "bad-key", None, "93000"),
        ("dingtalk", "no-such-token", "SECx", "300001"),
        ("dingtalk", "good-token", "SECwrong", "310000"),
        ("feishu", "good-hook", "wrong-secret", "19021"),
        ("feishu", "no-such-hook", None, "19001"),
    ],
)
def test_permanent_platform_errors_go_dead_with_the_reason(
    kind, target, secret, code, db, clock, wecom, dingtalk, feishu
):
    fake = {"wecom": wecom, "dingtalk": dingtalk, "feishu": feishu}[kind]
    channel = create_channel(db, kind, fake.url(target), secret=secret)
    (nid,) = create_notifications(db, channel, 1)
    make_dispatcher(db, clock).dispatch_once()
    (row,) = rows(db, [nid])
    assert row.status == "dead"
    assert code in row.last_error
    (attempt,) = attempts(db, nid)
    assert not attempt.ok and code in attempt.response_excerpt


def test_dingtalk_stale_signature_timestamp_is_refused(db, clock, dingtalk):
    notifiers = notifiers_on(clock)
    notifiers["dingtalk"] = DingTalkNotifier(clock=lambda: clock.time() - 7200)
    channel = create_channel(
        db, "dingtalk", dingtalk.url("good-token"), secret="SECdingtalk-secret"
    )
    (nid,) = create_notifications(db, channel, 1)
    make_dispatcher(db, clock, notifiers=notifiers).dispatch_once()
    (row,) = rows(db, [nid])
    assert row.status == "dead" and "310000" in row.last_error and "timestamp" in row.last_error


def test_dingtalk_without_secret_sends_no_signature(db, clock, dingtalk):
    channel = create_channel(db, "dingtalk", dingtalk.url("plain-token"))
    create_notifications(db, channel, 1)
    make_dispatcher(db, clock).dispatch_once()
    assert len(dingtalk.messages) == 1
