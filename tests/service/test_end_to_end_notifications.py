"""REST → engine → outbox → the real dispatcher → fake WeCom robot and signed webhook, on both databases."""

from __future__ import annotations

import threading

from sqlmodel import select

from service.jobs import make_dispatcher
from service.models import Notification
from service.openapi import Delivery
from tests.helpers import (
    ADMIN,
    advance,
    city,
    create_blocker,
    create_key,
    create_project,
    make_client,
    month_with_a_laggard,
    ok,
    set_clock,
)
from tests.notifiers.fakes import WebhookReceiver, WeComRobot


def add_group(client, unit: str, url: str = "http://127.0.0.1:9/cgi-bin/webhook/send?key=k") -> None:
    """The unit's WeCom group robot (by default one nobody answers: rows stay in the outbox)."""
    ok(client.post("/api/v1/channels", json={"unit": unit, "kind": "wecom", "url": url}, headers=ADMIN), 201)


def deliver(client, rounds: int) -> None:
    """What the dispatcher of `duban serve` does, `rounds` times over."""
    dispatcher = make_dispatcher(client.app)
    try:
        for _ in range(rounds):
            dispatcher.dispatch_once()
    finally:
        dispatcher.close()


def test_assignment_and_escalation_reach_the_chat_group_and_subscribers(db_url):
    with (
        WeComRobot({"k-wy", "k-zb"}) as wecom,
        WebhookReceiver("hook-secret-123") as hook,
        make_client(db_url) as client,
    ):
        city(client)
        ok(
            client.post(
                "/api/v1/channels",
                json={"unit": "wy", "kind": "wecom", "url": wecom.url("k-wy")},
                headers=ADMIN,
            ),
            201,
        )
        ok(
            client.post(
                "/api/v1/channels",
                json={"unit": "xx-zb", "kind": "wecom", "url": wecom.url("k-zb")},
                headers=ADMIN,
            ),
            201,
        )
        sub = ok(
            client.post(
                "/api/v1/webhooks",
                json={
                    "url": hook.url,
                    "secret": "hook-secret-123",
                    "events": ["blocker.escalated", "blocker.assign", "blocker.created"],
                },
                headers=ADMIN,
            ),
            201,
        )
        assert sub["events"] == ["blocker.assign", "blocker.created", "blocker.escalated"]
        # A channel pointing at an address outside the allow-list is refused and not stored.
        bad = client.post(
            "/api/v1/channels",
            json={
                "unit": "wy",
                "kind": "wecom",
                "url": "https://10.0.0.8/cgi-bin/webhook/send?key=x",
            },
            headers=ADMIN,
        )
        assert bad.status_code == 422 and "url" in bad.json()["detail"]
        create_project(client, "P1", "wy")
        b = create_blocker(client, "P1", title="征地拆迁补偿未到位", category="征地拆迁", external_ref="GT-9")
        ok(
            client.post(
                f"/api/v1/blockers/{b['id']}/assign",
                json={"unit": "wy", "deadline": {"working_days": 2}},
                headers=ADMIN,
            )
        )
        ok(
            client.post(
                f"/api/v1/blockers/{b['id']}/acknowledge", json={}, headers=create_key(client, "wy")
            )
        )
        advance(client, "P3D")  # past the deadline: escalated to the general taskforce
        deliver(client, 5)
        groups = {m.robot for m in wecom.messages}
        assert groups == {"k-wy", "k-zb"}
        assigned = [m for m in wecom.messages if m.robot == "k-wy" and "交办" in m.content]
        assert (
            assigned
            and "征地拆迁补偿未到位" in assigned[0].content
            and "13900000002" in assigned[0].mentions
        )
        escalated = [m for m in wecom.messages if m.robot == "k-zb"]
        assert escalated and "逾期" in escalated[0].content + escalated[0].title
        # Subscribed by action name ("blocker.assign"); delivered under the event name.
        assert sorted(hook.events.values()) == ["blocker.assigned", "blocker.created", "blocker.escalated"]
        assert hook.duplicates == 0
        bodies = {body["type"]: body for body in hook.bodies.values()}
        assert all(body["blocker_id"] == b["id"] for body in bodies.values())
        # Enough to mirror the blocker from the deliveries alone, the creation included.
        created, escalated_body = bodies["blocker.created"], bodies["blocker.escalated"]
        assert (created["version"], created["event"]["seq"], created["external_ref"]) == (1, 1, "GT-9")
        assert created["event"]["id"] and created["project"] == "P1" and created["state"] == "collected"
        assert (escalated_body["unit"], escalated_body["deadline"], escalated_body["overdue"]) == (
            "wy", "2026-03-04", True)
        assert escalated_body["due_at"] == "2026-03-04T23:59:59+08:00" and escalated_body["escalation_level"] == 1
        # Each as /openapi.json describes it under `webhooks`.
        documented = client.get("/openapi.json").json()["webhooks"]["blocker-event"]["post"]
        assert {p["name"].lower() for p in documented["parameters"]} >= {"x-duban-signature", "x-duban-delivery"}
        for body in bodies.values():
            Delivery.model_validate(body)
        sent = ok(
            client.get(f"/api/v1/notifications?blocker={b['id']}&status=sent", headers=ADMIN)
        )["items"]
        assert len(sent) >= 4 and all(n["attempts"] >= 1 for n in sent)
        assert ok(client.get("/api/v1/notifications?status=pending", headers=ADMIN))["items"] == []


def test_daily_digest_at_nine_on_working_days_once(db_url):
    with WeComRobot({"k-wy", "k-zb"}) as wecom, make_client(db_url, clock_start="2026-03-02T08:00:00+08:00") as client:
        city(client)
        add_group(client, "wy", wecom.url("k-wy"))
        add_group(client, "xx-zb", wecom.url("k-zb"))
        create_project(client, "P1", "wy")
        for days in (2, 20):
            b = create_blocker(client, "P1", title=f"限期{days}个工作日的问题")
            ok(client.post(f"/api/v1/blockers/{b['id']}/assign", json={"unit": "wy", "deadline": {"working_days": days}},
                           headers=ADMIN))
        advance(client, "PT30M")  # 08:30: not yet
        digests = ok(client.get("/api/v1/notifications", headers=ADMIN))["items"]
        assert not [n for n in digests if n["kind"] == "daily_digest"]
        advance(client, "PT1H")  # 09:30 Monday
        advance(client, "PT1H")  # again the same day: still one
        deliver(client, 3)
        daily = [m for m in wecom.messages if "每日督办" in (m.title + m.content)]
        assert len(daily) == 1 and daily[0].robot == "k-wy"
        assert "限期2个工作日的问题" in daily[0].content and "限期20个工作日的问题" not in daily[0].content


def test_monthly_briefing_ranks_units_and_names_the_last_once_a_month(db_url):
    with WeComRobot({"k-wy", "k-hj", "k-zb"}) as wecom, make_client(db_url) as client:
        city(client)
        for unit, key in (("wy", "k-wy"), ("hj", "k-hj"), ("xx-zb", "k-zb")):
            add_group(client, unit, wecom.url(key))
        create_project(client, "P1", "wy")
        create_project(client, "P2", "hj")

        def briefings() -> list:
            deliver(client, 3)
            return [m for m in wecom.messages if "月度督办通报" in m.content]

        month_with_a_laggard(client, "2026-03-04T10:00:00+08:00")
        set_clock(client, "2026-04-01T08:00:00+08:00")  # the first working day, before 09:00
        assert briefings() == []
        set_clock(client, "2026-04-01T09:30:00+08:00")
        advance(client, "PT1H")  # again: still once
        march = briefings()
        assert sorted(m.robot for m in march) == ["k-hj", "k-wy", "k-zb"]
        text = march[0].content
        assert "【月度督办通报】2026年3月责任单位排名" in text
        assert "1. 原阳县人民政府｜" in text and "2. 获嘉县人民政府｜" in text  # the table, best first
        assert "获嘉县人民政府排名末位，予以通报批评。" in text and "约谈" not in text
        month_with_a_laggard(client, "2026-04-03T10:00:00+08:00")
        set_clock(client, "2026-05-08T10:00:00+08:00")  # after the May Day holiday
        april = briefings()[3:]
        assert len(april) == 3 and all("2026年4月" in m.content for m in april)
        assert "获嘉县人民政府排名末位，予以通报批评；连续 2 个月排名末位，由分管领导约谈。" in april[0].content
        rows = ok(client.get("/api/v1/notifications?status=sent&limit=500", headers=ADMIN))["items"]
        assert sum(n["kind"] == "monthly_briefing" for n in rows) == 6


def test_a_long_clock_jump_writes_each_days_digest_as_the_running_service_would(db_url):
    with make_client(db_url) as client:  # Monday 2 March 2026, 09:30
        city(client)
        add_group(client, "wy")
        create_project(client, "P1", "wy")
        bid = create_blocker(client, "P1")["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 1}},
                       headers=ADMIN))
        advance(client, "P14D")  # to Monday 16 March, 09:30, in one jump
        with client.app.state.db.unit_of_work(readonly=True) as session:
            ids = session.exec(select(Notification.delivery_id).where(Notification.kind == "daily_digest"))
            days = sorted(i.split("-", 1)[1].rsplit("-", 1)[0] for i in ids)
        assert days == ["2026-03-03", "2026-03-04", "2026-03-05", "2026-03-06", "2026-03-09",
                        "2026-03-10", "2026-03-11", "2026-03-12", "2026-03-13", "2026-03-16"]


def test_the_taskforce_digest_heads_each_item_by_why_it_was_escalated(db_url):
    from notifiers.render import render

    with make_client(db_url) as client:  # Monday 2 March 2026, 09:30
        city(client)
        add_group(client, "xx-zb")
        create_project(client, "P1", "wy")
        by_authority = create_blocker(client, "P1", authority_level="city")["id"]
        requested = create_blocker(client, "P1")["id"]
        for bid in (by_authority, requested):
            ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 10}},
                           headers=ADMIN))
            ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
        ok(client.post(f"/api/v1/blockers/{requested}/request_escalation", json={"reason": "需市级层面协调"},
                       headers=ADMIN))
        advance(client, "P1D")  # Tuesday 09:30: the taskforce's queue digest
        with client.app.state.db.unit_of_work(readonly=True) as session:
            (row,) = session.exec(select(Notification).where(Notification.kind == "daily_digest")).all()
        text = render("daily_digest", row.context, "https://duban.example.gov.cn").text
        assert "【提级督办】" in text and "【申请提级协调】" in text and "逾期升级" not in text


def test_the_taskforce_digest_lists_the_most_overdue_first(db_url):
    """Escalated later, but due earlier: first in the list, so a platform's cut, which drops
    the end of a long list, drops what is least urgent."""
    with make_client(db_url) as client:  # Monday 2 March 2026, 09:30
        city(client)
        add_group(client, "xx-zb")
        create_project(client, "P1", "wy")
        later, sooner = create_blocker(client, "P1")["id"], create_blocker(client, "P1")["id"]
        for bid, days in ((later, 10), (sooner, 1)):
            ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": days}},
                           headers=ADMIN))
            ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
        ok(client.post(f"/api/v1/blockers/{later}/request_escalation", json={"reason": "需市级层面协调"},
                       headers=ADMIN))
        advance(client, "P2D")  # Wednesday 09:30: `sooner`, due Tuesday, was escalated after `later`
        with client.app.state.db.unit_of_work(readonly=True) as session:
            rows = session.exec(select(Notification).where(Notification.kind == "daily_digest")
                                .order_by(Notification.id)).all()
        assert [i["blocker_id"] for i in rows[-1].context["items"]] == [sooner, later]


def test_the_units_digest_labels_a_blocker_not_signed_for_as_such(db_url):
    from notifiers.render import render

    with make_client(db_url) as client:  # Monday 2 March 2026, 09:30
        city(client)
        add_group(client, "wy")
        create_project(client, "P1", "wy")
        signed, unsigned = create_blocker(client, "P1")["id"], create_blocker(client, "P1")["id"]
        for bid in (signed, unsigned):
            ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 2}},
                           headers=ADMIN))
        ok(client.post(f"/api/v1/blockers/{signed}/acknowledge", json={}, headers=ADMIN))
        advance(client, "P1D")  # Tuesday 09:30: wy's digest lists both, due Wednesday
        with client.app.state.db.unit_of_work(readonly=True) as session:
            (row,) = session.exec(select(Notification).where(Notification.kind == "daily_digest")).all()
        lines = render("daily_digest", row.context, "https://duban.example.gov.cn").text.splitlines()
        assert any("【签收提醒】" in line for line in lines) and any("【到期提醒】" in line for line in lines)
        assert [i["blocker_id"] for i in row.context["items"] if i["kind"] == "acknowledge_reminder"] == [unsigned]


def test_every_delivery_is_named_for_what_happened(db_url):
    """A unit's own webhook channel and a `*` subscription both receive event names
    (blocker.assigned, blocker.deadline_reminder …), never bare action names."""
    with (
        WebhookReceiver("unit-secret") as unit_hook,
        WebhookReceiver("sub-secret") as sub_hook,
        make_client(db_url) as client,
    ):
        city(client)
        ok(client.post("/api/v1/channels", json={"unit": "wy", "kind": "webhook", "url": unit_hook.url,
                                                 "secret": "unit-secret"}, headers=ADMIN), 201)
        ok(client.post("/api/v1/webhooks", json={"url": sub_hook.url, "secret": "sub-secret", "events": ["*"]},
                       headers=ADMIN), 201)
        create_project(client, "P1", "wy")
        bid = create_blocker(client, "P1")["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 5}},
                       headers=ADMIN))
        advance(client, "P14D")  # ack missed twice, reminders, the deadline, a climb
        deliver(client, 5)
        assert "blocker.assigned" in unit_hook.events.values()
        assert all(unit_hook.bodies[d]["type"] == name for d, name in unit_hook.events.items())
        assert all(sub_hook.bodies[d]["type"] == name for d, name in sub_hook.events.items())
        names = set(sub_hook.events.values())
        assert {"blocker.created", "blocker.assigned", "blocker.acknowledgement_missed",
                "blocker.overdue", "blocker.escalated", "blocker.climbed"} <= names
        actions = {"blocker.assign", "blocker.acknowledge_missed", "blocker.remind_deadline", "blocker.climb"}
        assert not (names | set(unit_hook.events.values())) & actions


def test_a_group_with_nothing_at_nine_gets_no_digest_later_that_day(db_url):
    with make_client(db_url, clock_start="2026-03-02T08:00:00+08:00") as client:
        city(client)
        add_group(client, "xx-zb")
        create_project(client, "P1", "wy")
        advance(client, "PT1H30M")  # 09:30 Monday: the taskforce's queue is empty
        bid = create_blocker(client, "P1")["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 10}},
                       headers=ADMIN))
        ok(client.post(f"/api/v1/blockers/{bid}/request_escalation", json={"reason": "需市级层面协调"},
                       headers=ADMIN))
        advance(client, "PT1H")  # 10:30: the queue has an item, already announced on its own

        def digest_days() -> list[str]:
            with client.app.state.db.unit_of_work(readonly=True) as session:
                rows = session.exec(select(Notification).where(Notification.kind == "daily_digest")).all()
            return sorted(r.context["date"] for r in rows)

        assert digest_days() == []
        advance(client, "P1D")  # Tuesday 10:30: the queue's digest, at 09:00
        assert digest_days() == ["2026-03-03"]


def test_a_manual_retry_keeps_counting_attempts(db_url):
    with WeComRobot(set()) as wecom, make_client(db_url) as client:
        city(client)
        add_group(client, "wy", wecom.url("k-new"))  # a robot key the platform does not know yet
        create_project(client, "P1", "wy")
        bid = create_blocker(client, "P1")["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 5}},
                       headers=ADMIN))
        deliver(client, 2)
        (dead,) = ok(client.get("/api/v1/notifications?status=dead", headers=ADMIN))["items"]
        assert dead["attempts"] == 1 and "93000" in dead["last_error"]
        wecom.keys.add("k-new")  # the group's robot is set up properly
        ok(client.post(f"/api/v1/notifications/{dead['id']}/retry", headers=ADMIN), 202)
        deliver(client, 2)
        (sent,) = ok(client.get("/api/v1/notifications?status=sent", headers=ADMIN))["items"]
        assert sent["id"] == dead["id"] and sent["attempts"] == 2 and len(sent["attempt_log"]) == 2


def test_a_notification_on_the_wire_cannot_be_retried_until_its_outcome_is_in(db_url):
    with WeComRobot({"k"}) as wecom, make_client(db_url) as client:
        city(client)
        add_group(client, "wy", wecom.url("k"))
        create_project(client, "P1", "wy")
        bid = create_blocker(client, "P1")["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 5}},
                       headers=ADMIN))
        (row,) = ok(client.get("/api/v1/notifications", headers=ADMIN))["items"]
        assert row["created_at"] == "2026-03-02T09:30:00+08:00"  # business time, as the timeline
        # Not tried yet: a retry leaves it as it is (202), due when it was due.
        again = client.post(f"/api/v1/notifications/{row['id']}/retry", headers=ADMIN)
        assert again.status_code == 202 and (again.json()["status"], again.json()["not_before"]) == (
            "pending", row["not_before"])
        wecom.hold()  # the robot has the message and has not answered yet
        sending = threading.Thread(target=deliver, args=(client, 1))
        sending.start()
        try:
            assert wecom.arrived.wait(10)
            # A retry now would be overwritten by the outcome on its way: refused, nothing changed.
            refused = client.post(f"/api/v1/notifications/{row['id']}/retry", headers=ADMIN)
            assert refused.status_code == 409 and "being sent right now" in refused.json()["detail"]
            assert ok(client.get("/api/v1/notifications", headers=ADMIN))["items"][0]["status"] == "pending"
        finally:
            wecom.let_go()
            sending.join(20)
        (sent,) = ok(client.get("/api/v1/notifications?status=sent", headers=ADMIN))["items"]
        assert sent["attempts"] == 1 and len(wecom.messages) == 1


def test_a_vice_mayors_office_gets_its_queue_in_the_daily_digest(db_url):
    from notifiers.render import render

    with make_client(db_url) as client:  # Monday 2 March 2026, 09:30
        city(client)
        add_group(client, "xx-fsz-land")  # the deputy mayor in charge of land (用地)
        create_project(client, "P1", "wy")
        bid = create_blocker(client, "P1", category="用地")["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 10}},
                       headers=ADMIN))
        for _ in range(2):  # level 1, then level 2: the deputy mayor's queue
            ok(client.post(f"/api/v1/blockers/{bid}/request_escalation", json={"reason": "需市级层面协调"},
                           headers=ADMIN))
        advance(client, "P1D")  # Tuesday 09:30
        with client.app.state.db.unit_of_work(readonly=True) as session:
            (row,) = session.exec(select(Notification).where(Notification.kind == "daily_digest")).all()
        text = render("daily_digest", row.context, "https://duban.example.gov.cn").text
        assert "分管副市长（自然资源）" in text and "【申请提级协调】" in text and "用地手续办理滞后" in text


def test_a_removed_subscription_gets_nothing_more_and_its_secret_is_rotated(db_url):
    with WebhookReceiver("new-secret-123") as hook, make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        wy = create_key(client, "wy")
        events = ["blocker.assign", "blocker.close", "blocker.acknowledge"]
        old = ok(client.post("/api/v1/webhooks", json={"url": hook.url, "secret": "old-secret-123", "events": events}, headers=wy), 201)
        new = ok(client.post("/api/v1/webhooks", json={"url": hook.url, "secret": "new-secret-123", "events": events}, headers=wy), 201)
        listed = ok(client.get("/api/v1/webhooks", headers=wy))["items"]
        assert [w["id"] for w in listed] == [old["id"], new["id"]] and "secret" not in listed[0]
        assert ok(client.get("/api/v1/webhooks", headers=create_key(client, "hj")))["items"] == []
        assert client.delete(f"/api/v1/webhooks/{old['id']}", headers=wy).status_code == 204
        assert client.delete(f"/api/v1/webhooks/{old['id']}", headers=wy).status_code == 404
        assert [w["id"] for w in ok(client.get("/api/v1/webhooks", headers=wy))["items"]] == [new["id"]]
        bid = create_blocker(client, "P1")["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 5}}, headers=ADMIN))
        deliver(client, 2)
        # Only the remaining subscription's deliveries arrive, all signed with the new secret.
        assert len(hook.deliveries) == 1 and hook.rejected == 0
        rows = ok(client.get("/api/v1/notifications", params={"blocker": bid}, headers=ADMIN))["items"]
        assert {r["channel"] for r in rows if r["status"] == "sent"} == {new["channel_id"]}
