"""The closed loop over REST with the simulation clock, on both databases."""

from __future__ import annotations

from sqlmodel import select

from notifiers.render import cn_date
from service.models import Escalation, Notification, Timer
from tests.helpers import (
    ADMIN,
    advance,
    city,
    create_blocker,
    create_key,
    create_project,
    make_client,
    ok,
    set_clock,
)


def _units(client, rows) -> None:
    for code, name, level, kind, parent in rows:
        body = {"code": code, "name": name, "level": level, "kind": kind, "parent": parent}
        ok(client.post("/api/v1/units", json=body, headers=ADMIN), 201)


def _assigned(client, days=5, **extra):
    create_project(client, "P1", "wy")
    blocker = create_blocker(client, "P1", **extra)
    body = {"unit": "wy", "deadline": {"working_days": days}}
    return ok(client.post(f"/api/v1/blockers/{blocker['id']}/assign", json=body, headers=ADMIN))


def test_full_loop_with_return_and_close(db_url):
    with make_client(db_url) as client:
        city(client)
        b = _assigned(client, days=5)
        bid = b["id"]
        # Assigned Monday 2026-03-02 09:30: 5 working days → Monday 2026-03-09, end of day.
        assert b["state"] == "assigned" and b["deadline"] == "2026-03-09"
        assert b["due_at"] == "2026-03-09T23:59:59+08:00" and b["version"] == 2
        unit_key = create_key(client, "wy")
        tf_key = create_key(client, "xx-zb")
        # The taskforce may not acknowledge for the unit; the unit may not verify.
        assert (
            client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=tf_key).status_code
            == 403
        )
        b = ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=unit_key))
        assert b["state"] == "supervised"
        detail = ok(client.get(f"/api/v1/blockers/{bid}", headers=ADMIN))
        kinds = sorted(t["kind"] for t in detail["timers"])
        assert kinds == [
            "deadline",
            "feedback_due",
            "remind_before_deadline_1",
            "remind_before_deadline_3",
        ]
        b = ok(
            client.post(
                f"/api/v1/blockers/{bid}/report_resolved", json={"note": "已解决"}, headers=unit_key
            )
        )
        assert b["state"] == "resolved"
        refused = client.post(
            f"/api/v1/blockers/{bid}/verify",
            json={"satisfied": False, "note": "企业不满意"},
            headers=unit_key,
        )
        assert refused.status_code == 403
        b = ok(
            client.post(
                f"/api/v1/blockers/{bid}/verify",
                json={"satisfied": False, "note": "企业不满意", "deadline": {"working_days": 3}},
                headers=tf_key,
            )
        )
        assert (
            b["state"] == "supervised" and b["return_count"] == 1 and b["deadline"] == "2026-03-05"
        )
        ok(
            client.post(
                f"/api/v1/blockers/{bid}/report_resolved", json={"note": "已整改"}, headers=unit_key
            )
        )
        ok(
            client.post(
                f"/api/v1/blockers/{bid}/verify",
                json={"satisfied": True, "note": "满意"},
                headers=tf_key,
            )
        )
        b = ok(client.post(f"/api/v1/blockers/{bid}/close", json={"note": "销号"}, headers=tf_key))
        assert b["state"] == "closed" and b["closed_at"]
        detail = ok(client.get(f"/api/v1/blockers/{bid}", headers=ADMIN))
        assert [e["action"] for e in detail["timeline"]] == [
            "create",
            "assign",
            "acknowledge",
            "report_resolved",
            "verify",
            "report_resolved",
            "verify",
            "close",
        ]
        assert [e["seq"] for e in detail["timeline"]] == list(range(1, 9))
        assert detail["timers"] == []


def test_escalation_on_repeated_failed_verification_speaks_of_the_returned_blocker(db_url):
    from sqlmodel import select

    from notifiers.render import render
    from service.models import Notification

    with make_client(db_url) as client:
        city(client)
        for unit in ("xx-zb", "wy"):
            ok(client.post("/api/v1/channels", json={"unit": unit, "kind": "wecom",
                                                     "url": f"http://127.0.0.1:9/cgi-bin/webhook/send?key={unit}"},
                           headers=ADMIN), 201)
        bid = _assigned(client, days=5)["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
        for _ in range(2):
            ok(client.post(f"/api/v1/blockers/{bid}/report_resolved", json={"note": "已解决"}, headers=ADMIN))
            b = ok(client.post(f"/api/v1/blockers/{bid}/verify",
                               json={"satisfied": False, "note": "企业不满意", "deadline": {"working_days": 3}},
                               headers=ADMIN))
        assert b["state"] == "supervised" and b["escalation_level"] == 1
        with client.app.state.db.unit_of_work(readonly=True) as session:
            (row,) = session.exec(select(Notification).where(Notification.kind == "escalated")).all()
        text = render("escalated", row.context, "https://duban.example.gov.cn").text
        assert "【核验未通过升级】" in text and f"{cn_date(b['deadline'], '剩余 3 个工作日')}" in text
        assert "已办结" not in text
        with client.app.state.db.unit_of_work(readonly=True) as session:
            rows = session.exec(select(Notification).where(Notification.kind == "returned")
                                .order_by(Notification.id)).all()
        second = render("returned", rows[-1].context, "https://duban.example.gov.cn").text
        assert "第 1 级（市综合专班）" in second  # every message names the level as escalations do


def test_a_deadline_date_on_a_day_off_is_kept_with_a_warning(db_url):
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        bid = create_blocker(client, "P1")["id"]
        for day, warned in (("2026-03-14", True), ("2026-03-16", False)):  # a Saturday, a Monday
            body = {"unit": "wy", "deadline": {"date": day}}
            action = "assign" if day == "2026-03-14" else "verify"
            if action == "verify":
                ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
                ok(client.post(f"/api/v1/blockers/{bid}/report_resolved", json={"note": "已办"}, headers=ADMIN))
                body = {"satisfied": False, "note": "不满意", "deadline": {"date": day}}
            b = ok(client.post(f"/api/v1/blockers/{bid}/{action}", json=body, headers=ADMIN))
            assert b["deadline"] == day
            assert any("不是工作日" in w for w in b["warnings"]) is warned


def test_a_return_without_a_deadline_never_cuts_the_units_time(db_url):
    with make_client(db_url) as client:  # Monday 2 March 2026
        city(client)
        bid = _assigned(client, days=20)["id"]  # due 2026-03-30
        ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
        ok(client.post(f"/api/v1/blockers/{bid}/report_resolved", json={"note": "已解决"}, headers=ADMIN))
        b = ok(client.post(f"/api/v1/blockers/{bid}/verify", json={"satisfied": False, "note": "企业不满意"},
                           headers=ADMIN))
        assert b["state"] == "supervised" and b["deadline"] == "2026-03-30"  # not 5 working days on
        ok(client.post(f"/api/v1/blockers/{bid}/report_resolved", json={"note": "已整改"}, headers=ADMIN))
        body = {"satisfied": False, "note": "仍不满意", "deadline": {"working_days": 3}}
        b = ok(client.post(f"/api/v1/blockers/{bid}/verify", json=body, headers=ADMIN))
        assert b["deadline"] == "2026-03-05"  # a deadline given is taken as given


def test_not_allowed_is_409_and_stale_version_is_412_and_change_nothing(db_url):
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        b = create_blocker(client, "P1")
        response = client.post(f"/api/v1/blockers/{b['id']}/close", json={}, headers=ADMIN)
        assert response.status_code == 409
        assert response.json()["allowed_actions"] == ["assign", "withdraw"]
        stale = client.post(
            f"/api/v1/blockers/{b['id']}/assign",
            json={"unit": "wy", "deadline": {"working_days": 3}},
            headers={**ADMIN, "If-Match": '"7"'},
        )
        assert stale.status_code == 412
        after = ok(client.get(f"/api/v1/blockers/{b['id']}", headers=ADMIN))
        assert (
            after["version"] == 1 and after["state"] == "collected" and len(after["timeline"]) == 1
        )
        fresh = client.post(
            f"/api/v1/blockers/{b['id']}/assign",
            json={"unit": "wy", "deadline": {"working_days": 3}},
            headers={**ADMIN, "If-Match": '"1"'},
        )
        assert fresh.status_code == 200 and fresh.headers["etag"] == '"2"'


def test_deadline_escalates_and_climbs_the_ladder_exactly_once(db_url):
    with make_client(db_url) as client:
        city(client)
        b = _assigned(client, days=2)
        bid = b["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
        # Deadline Wednesday 2026-03-04 end of day; move to Thursday morning.
        fired = advance(client, "P2DT23H")["fired"]
        assert fired >= 2  # the 1-day reminder and the deadline itself
        b = ok(client.get(f"/api/v1/blockers/{bid}", headers=ADMIN))
        assert b["state"] == "deadline" and b["escalation_level"] == 1 and b["overdue"] is True
        deadline_event = next(e for e in b["timeline"] if e["action"] == "deadline_passed")
        assert deadline_event["at"] == "2026-03-04T23:59:59+08:00"
        assert deadline_event["actor"] == "system:timer"
        tf_key = create_key(client, "xx-zb")
        queue = ok(client.get("/api/v1/escalations", headers=tf_key))["items"]
        assert [(q["blocker_id"], q["level"], q["reason"], q["unit"]) for q in queue] == [
            (bid, 1, "overdue", "xx-zb")
        ]
        # Every 3 working days one more level: level 2 goes to the 用地 deputy mayor, then city government.
        advance(client, "P30D")
        b = ok(client.get(f"/api/v1/blockers/{bid}", headers=ADMIN))
        assert b["escalation_level"] == 3
        assert "request_escalation" not in b["allowed_actions"]  # not offered at the top
        with client.app.state.db.unit_of_work(readonly=True) as session:
            entries = list(session.exec(select(Escalation).order_by(Escalation.level)))
            assert [(e.level, e.reason) for e in entries] == [
                (1, "overdue"),
                (2, "stuck"),
                (3, "stuck"),
            ]
            fired_steps = list(
                session.exec(
                    select(Timer.blocker_id, Timer.kind, Timer.step).where(Timer.status == "fired")
                )
            )
            assert len(fired_steps) == len(set(fired_steps))
        escalated_to = [
            e["payload"]["escalations"][0]["to"]
            for e in b["timeline"]
            if "escalations" in e["payload"]
        ]
        assert escalated_to == ["xx-zb", "xx-fsz-land", "xx"]
        # Handling the queue entry is recorded on the timeline; resolution closes the rest.
        entry = queue[0]
        handled = ok(
            client.post(
                f"/api/v1/escalations/{entry['id']}/handle", json={"note": "已协调"}, headers=tf_key
            )
        )
        assert handled["status"] == "handled" and handled["handled_by"].startswith("key:")
        ok(
            client.post(
                f"/api/v1/blockers/{bid}/report_resolved", json={"note": "办结"}, headers=ADMIN
            )
        )
        open_entries = ok(client.get("/api/v1/escalations?status=open", headers=ADMIN))["items"]
        assert open_entries == []


def test_request_escalation_and_city_authority(db_url):
    with make_client(db_url) as client:
        city(client)
        b = _assigned(client, days=10, authority_level="city")
        assert b["escalation_level"] == 1
        leader_key = create_key(client, "xx-fsz-land")
        assert client.get(f"/api/v1/blockers/{b['id']}", headers=leader_key).status_code == 404
        unit_key = create_key(client, "wy")
        b = ok(
            client.post(
                f"/api/v1/blockers/{b['id']}/request_escalation",
                json={"reason": "需市级层面协调"},
                headers=unit_key,
            )
        )
        assert b["escalation_level"] == 2
        # The receiving leader office now sees the blocker (escalated to it) although outside its subtree.
        assert ok(client.get(f"/api/v1/blockers/{b['id']}", headers=leader_key))["id"] == b["id"]


def test_unacknowledged_twice_escalates_and_reminders_respect_office_hours(db_url):
    with make_client(db_url) as client:
        city(client)
        b = _assigned(client, days=10)
        set_clock(client, "2026-03-05T08:00:00+08:00")
        b = ok(client.get(f"/api/v1/blockers/{b['id']}", headers=ADMIN))
        actions = [e["action"] for e in b["timeline"]]
        assert actions.count("acknowledge_missed") == 2
        assert b["escalation_level"] == 1
        with client.app.state.db.unit_of_work(readonly=True) as session:
            assert session.exec(select(Notification)).first() is None  # no channels configured


def test_the_second_acknowledgement_reminder_says_it_was_escalated_not_that_it_will_be(db_url):
    from notifiers.render import render

    with make_client(db_url) as client:
        city(client)
        ok(client.post("/api/v1/channels", json={"unit": "wy", "kind": "wecom",
                                                 "url": "http://127.0.0.1:9/cgi-bin/webhook/send?key=k"}, headers=ADMIN),
           201)
        b = _assigned(client, days=10)
        set_clock(client, "2026-03-05T08:00:00+08:00")
        with client.app.state.db.unit_of_work(readonly=True) as session:
            rows = session.exec(select(Notification).where(Notification.blocker_id == b["id"],
                                                           Notification.kind == "acknowledge_reminder")
                                .order_by(Notification.id)).all()
        first, second = (render(r.kind, r.context, "https://duban.example.gov.cn").text for r in rows)
        assert "逾期仍未签收的，将按规定升级督办" in first and "已按规定升级督办" not in first
        assert "已按规定升级督办（市综合专班）" in second and "将按规定升级督办" not in second


def test_the_ladder_of_a_city_whose_units_carry_no_tags(db_url):
    """api.md's unit has no tags: the ladder follows the units' kinds and names instead."""
    with make_client(db_url) as client:
        _units(client, (
            ("pds", "平顶山市人民政府", "city", "government", None),
            ("pds-zx", "市重大项目建设工作专班（交通）", "city", "taskforce", "pds"),
            ("pds-zb", "市综合专班", "city", "taskforce", "pds"),
            ("pds-cw", "常务副市长办公室", "city", "leader", "pds"),
            ("pds-yd", "分管副市长办公室（用地）", "city", "leader", "pds"),
            ("bf", "宝丰县人民政府", "county", "government", "pds"),
        ))
        create_project(client, "P1", "bf")
        climbed = {}
        for category in ("用地", "涉铁涉军涉河涉电"):
            bid = create_blocker(client, "P1", category=category)["id"]
            body = {"unit": "bf", "deadline": {"working_days": 20}}
            ok(client.post(f"/api/v1/blockers/{bid}/assign", json=body, headers=ADMIN))
            for _ in range(3):
                ok(
                    client.post(
                        f"/api/v1/blockers/{bid}/request_escalation",
                        json={"reason": "需市级层面协调"},
                        headers=ADMIN,
                    )
                )
            timeline = ok(client.get(f"/api/v1/blockers/{bid}", headers=ADMIN))["timeline"]
            climbed[category] = [
                e["payload"]["escalations"][0]["to"] for e in timeline if "escalations" in e["payload"]
            ]
        assert climbed == {"用地": ["pds-zb", "pds-yd", "pds"], "涉铁涉军涉河涉电": ["pds-zb", "pds-cw", "pds"]}
        tf_key = create_key(client, "pds-zb")
        queue = ok(client.get("/api/v1/escalations", headers=tf_key))["items"]
        assert [q["level"] for q in queue] == [1, 1]


def test_a_city_named_in_english_gets_its_ladder_too(db_url):
    """A client that names its units in English (nothing in api.md says otherwise): the
    general taskforce and the executive vice mayor are still found by their names."""
    with make_client(db_url) as client:
        _units(client, (
            ("city", "City Government", "city", "government", None),
            ("atf", "General Aviation Taskforce", "city", "taskforce", "city"),
            ("gtf", "General Taskforce for Key Projects", "city", "taskforce", "city"),
            ("ttf", "Transport Taskforce", "city", "taskforce", "city"),
            ("evm", "Executive Vice Mayor Office", "city", "leader", "city"),
            ("dm", "Deputy Mayor Office", "city", "leader", "city"),
            ("cty", "County Government", "county", "government", "city"),
        ))
        create_project(client, "P1", "cty")
        bid = create_blocker(client, "P1", category="Land")["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "cty", "deadline": {"working_days": 1}},
                       headers=ADMIN))
        advance(client, "P12D")  # past the deadline, then climbing every 3 working days
        queues = {code: [e["level"] for e in ok(client.get("/api/v1/escalations", headers=create_key(client, code)))["items"]]
                  for code in ("gtf", "evm", "city")}
        assert queues == {"gtf": [1], "evm": [2], "city": [3]}


def test_a_missing_rung_falls_back_up_the_ladder_never_down(db_url):
    """No deputy mayor's or executive vice mayor's office: level 2 goes to the city
    government, not back to the general taskforce that already holds level 1."""
    with make_client(db_url) as client:
        _units(client, (
            ("xc", "许昌市人民政府", "city", "government", None),
            ("xc-zb", "市综合专班", "city", "taskforce", "xc"),
            ("yz", "禹州市人民政府", "county", "government", "xc"),
        ))
        create_project(client, "P1", "yz")
        bid = create_blocker(client, "P1")["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "yz", "deadline": {"working_days": 20}},
                       headers=ADMIN))
        for _ in range(2):
            ok(client.post(f"/api/v1/blockers/{bid}/request_escalation", json={"reason": "需市级层面协调"},
                           headers=ADMIN))
        queue = ok(client.get("/api/v1/escalations", headers=ADMIN))["items"]
        assert [(q["level"], q["unit"]) for q in queue] == [(1, "xc-zb"), (2, "xc")]


def test_overdue_from_the_instant_the_deadline_fires(db_url):
    with make_client(db_url) as client:
        city(client)
        bid = _assigned(client, days=2)["id"]  # due 2026-03-04T23:59:59+08:00
        ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))

        def seen() -> tuple[str, bool, list[int], str]:
            b = ok(client.get(f"/api/v1/blockers/{bid}", headers=ADMIN))
            late = ok(client.get("/api/v1/blockers?overdue=true", headers=ADMIN))["items"]
            light = ok(client.get("/api/v1/projects/P1", headers=ADMIN))["light"]
            return b["state"], b["overdue"], [x["id"] for x in late], light

        set_clock(client, "2026-03-04T23:59:58+08:00")
        assert seen() == ("supervised", False, [], "yellow")  # due today: at risk
        set_clock(client, "2026-03-04T23:59:59+08:00")
        assert seen() == ("deadline", True, [bid], "red")


def test_asking_for_a_level_above_the_top_is_409_and_changes_nothing(db_url):
    with make_client(db_url) as client:
        city(client)
        bid = _assigned(client, days=10, authority_level="province")["id"]
        b = ok(client.get(f"/api/v1/blockers/{bid}", headers=ADMIN))
        assert b["escalation_level"] == 3
        assert "request_escalation" not in b["allowed_actions"]  # not offered at the top
        r = client.post(
            f"/api/v1/blockers/{bid}/request_escalation", json={"reason": "再次申请"}, headers=ADMIN
        )
        assert r.status_code == 409 and "top of the ladder" in r.json()["detail"]
        assert "request_escalation" not in r.json()["allowed_actions"]
        assert "acknowledge" in r.json()["allowed_actions"]
        after = ok(client.get(f"/api/v1/blockers/{bid}", headers=ADMIN))
        assert (after["version"], len(after["timeline"])) == (b["version"], len(b["timeline"]))


def test_no_climbing_past_the_top_of_the_ladder(db_url):
    """A blocker at the top when its deadline passes: state deadline, no empty climbs."""
    with make_client(db_url) as client:
        city(client)
        bid = _assigned(client, days=2, authority_level="province")["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
        advance(client, "P30D")
        b = ok(client.get(f"/api/v1/blockers/{bid}", headers=ADMIN))
        actions = [e["action"] for e in b["timeline"]]
        assert b["state"] == "deadline" and b["escalation_level"] == 3
        assert "deadline_passed" in actions and "climb" not in actions
        assert "climb" not in [t["kind"] for t in b["timers"]]
        with client.app.state.db.unit_of_work(readonly=True) as session:
            climbs = list(session.exec(select(Timer.status).where(Timer.kind == "climb")))
        assert climbs == ["cancelled"]


def test_a_returned_blocker_stuck_again_at_the_top_is_back_in_the_tops_queue(db_url):
    """Reporting it resolved closed its entries; a failed verification sends it back. When
    its new deadline passes at the top, it enters the top's queue again, once."""
    with make_client(db_url) as client:
        city(client)
        bid = _assigned(client, days=10, authority_level="province")["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
        ok(client.post(f"/api/v1/blockers/{bid}/report_resolved", json={"note": "已解决"}, headers=ADMIN))

        def held() -> list[tuple[int, str, str]]:
            items = ok(client.get("/api/v1/escalations?limit=500", headers=ADMIN))["items"]
            return [(e["level"], e["reason"], e["status"]) for e in items if e["blocker_id"] == bid
                    and e["status"] in ("open", "acknowledged")]

        assert held() == []
        body = {"satisfied": False, "note": "企业不满意", "deadline": {"working_days": 3}}
        ok(client.post(f"/api/v1/blockers/{bid}/verify", json=body, headers=ADMIN))
        advance(client, "P10D")
        b = ok(client.get(f"/api/v1/blockers/{bid}", headers=ADMIN))
        assert (b["state"], b["escalation_level"]) == ("deadline", 3)
        assert held() == [(3, "overdue", "open")]
        advance(client, "P20D")  # nothing more: one entry per return
        assert held() == [(3, "overdue", "open")]


def test_a_blocker_a_failed_verification_took_to_the_top_is_not_queued_there_twice(db_url):
    """The second failed verification escalates it to the top; when its new deadline then
    passes, it is already in the top's queue: no second entry for the same return."""
    with make_client(db_url) as client:
        city(client)
        bid = _assigned(client, days=10, authority_level="city")["id"]  # level 1
        ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
        ok(client.post(f"/api/v1/blockers/{bid}/request_escalation", json={"reason": "需协调"}, headers=ADMIN))
        for deadline in ({}, {"deadline": {"working_days": 1}}):
            ok(client.post(f"/api/v1/blockers/{bid}/report_resolved", json={"note": "已解决"}, headers=ADMIN))
            ok(client.post(f"/api/v1/blockers/{bid}/verify",
                           json={"satisfied": False, "note": "企业不满意", **deadline}, headers=ADMIN))

        def queued() -> list[tuple[int, str]]:
            items = ok(client.get("/api/v1/escalations?limit=500", headers=ADMIN))["items"]
            return [(e["level"], e["reason"]) for e in items
                    if e["blocker_id"] == bid and e["status"] in ("open", "acknowledged")]

        assert queued() == [(3, "failed_verification")]
        advance(client, "P4D")
        b = ok(client.get(f"/api/v1/blockers/{bid}", headers=ADMIN))
        assert (b["state"], b["escalation_level"]) == ("deadline", 3)
        assert queued() == [(3, "failed_verification")]


def test_a_blocker_only_the_province_can_solve_enters_the_top_queue_once(db_url):
    """It starts at the top: one entry there, not one at each level on the way (the general
    taskforce and the vice mayor are not told it was escalated to them)."""
    with make_client(db_url) as client:
        city(client)
        bid = _assigned(client, days=10, authority_level="province")["id"]
        entries = [(e["level"], e["reason"], e["unit"]) for e in
                   ok(client.get("/api/v1/escalations?limit=500", headers=ADMIN))["items"] if e["blocker_id"] == bid]
        assert entries == [(3, "authority", "xx")]
        b = ok(client.get(f"/api/v1/blockers/{bid}", headers=ADMIN))
        assert b["escalation_level"] == 3
        (assigned,) = [e for e in b["timeline"] if e["action"] == "assign"]
        assert [x["level"] for x in assigned["payload"]["escalations"]] == [3]


def test_assisting_units_name_others_once(db_url):
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        bid = create_blocker(client, "P1")["id"]
        body = {"unit": "wy", "deadline": {"working_days": 5}, "assisting_units": ["wy-zrzy", "wy"]}
        refused = client.post(f"/api/v1/blockers/{bid}/assign", json=body, headers=ADMIN)
        assert refused.status_code == 422 and "does not assist itself" in refused.json()["detail"]
        assert ok(client.get(f"/api/v1/blockers/{bid}", headers=ADMIN))["state"] == "collected"
        body["assisting_units"] = ["wy-zrzy", "hj", "wy-zrzy"]
        assigned = ok(client.post(f"/api/v1/blockers/{bid}/assign", json=body, headers=ADMIN))
        assert assigned["assisting_units"] == ["wy-zrzy", "hj"]
