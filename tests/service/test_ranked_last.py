"""A unit last in the monthly ranking for consecutive months is escalated itself (domain.md
"Escalation", seed 004): an entry in the receiving level's queue, announced in its group."""

from __future__ import annotations

from datetime import date

from notifiers.render import render
from tests.helpers import (
    ADMIN,
    advance,
    city,
    create_key,
    create_officer,
    create_project,
    create_unit,
    make_client,
    month_with_a_laggard,
    ok,
    set_clock,
)
from tests.notifiers.fakes import WeComRobot
from tests.service.test_end_to_end_notifications import add_group, deliver
from workflows.briefing import briefing_context


def unit_entries(client, headers=ADMIN) -> list[dict]:
    items = ok(client.get("/api/v1/escalations?limit=500", headers=headers))["items"]
    return [e for e in items if e["blocker_id"] is None]


def test_last_twice_goes_to_the_leader_in_charge_three_times_to_the_city(db_url):
    with WeComRobot({"k-cw", "k-city"}) as wecom, make_client(db_url) as client:
        city(client)
        add_group(client, "xx-cwfsz", wecom.url("k-cw"))  # the executive vice mayor's office
        add_group(client, "xx", wecom.url("k-city"))  # the city government
        create_project(client, "P1", "wy")
        create_project(client, "P2", "hj")
        vice_mayor = create_key(client, "xx-cwfsz")
        create_officer(client, "xx-cwfsz", "王副市长秘书", "13700000007", "liaison")

        month_with_a_laggard(client, "2026-03-04T10:00:00+08:00")
        set_clock(client, "2026-04-01T10:00:00+08:00")
        assert unit_entries(client) == []  # last once: 通报批评 in the briefing, no escalation

        month_with_a_laggard(client, "2026-04-03T10:00:00+08:00")
        set_clock(client, "2026-05-08T10:00:00+08:00")  # across the May Day holiday
        advance(client, "PT1H")  # another tick: still one entry
        (second,) = unit_entries(client)
        assert second["reason"] == "ranked_last" and second["level"] == 2
        assert second["from_unit"] == "hj" and second["unit"] == "xx-cwfsz"
        assert second["status"] == "open" and "分管领导约谈" in second["detail"]
        # Written at the briefing's moment: 09:00 on May's first working day (the 6th).
        assert second["created_at"] == "2026-05-06T09:00:00+08:00"
        assert unit_entries(client, vice_mayor) == [second]  # in that office's own queue

        deliver(client, 3)
        (message,) = [m for m in wecom.messages if "排名靠后升级" in m.content]
        assert message.robot == "k-cw"
        assert message.mentions == ["13700000007"]  # who arranges the 约谈 is @-ed
        assert "获嘉县人民政府连续 2 个月排名末位" in message.content and "分管领导约谈" in message.content

        for action, status in (("acknowledge", "acknowledged"), ("handle", "handled")):
            entry = ok(client.post(f"/api/v1/escalations/{second['id']}/{action}", json={"note": "已约谈"},
                                   headers=vice_mayor))
            assert entry["status"] == status
        assert entry["handled_by"] and entry["note"] == "已约谈"

        month_with_a_laggard(client, "2026-05-12T10:00:00+08:00")
        set_clock(client, "2026-06-01T09:30:00+08:00")
        third = [e for e in unit_entries(client) if e["id"] != second["id"]]
        assert [(e["level"], e["unit"], e["from_unit"]) for e in third] == [(3, "xx", "hj")]
        assert "连续 3 个月" in third[0]["detail"] and "主要领导约谈" in third[0]["detail"]
        deliver(client, 3)
        assert [m.robot for m in wecom.messages if "连续 3 个月排名末位" in m.content] == ["k-city"]


def _last_in_march_and_april(client) -> None:
    """hj last in March's ranking and in April's (their briefings: 1 April and 6 May)."""
    city(client)
    create_project(client, "P1", "wy")
    create_project(client, "P2", "hj")
    month_with_a_laggard(client, "2026-03-04T10:00:00+08:00")
    set_clock(client, "2026-04-01T10:00:00+08:00")
    month_with_a_laggard(client, "2026-04-03T10:00:00+08:00")


def test_a_jump_over_months_escalates_without_any_chat_group(db_url):
    """The briefing's moment is a stop of a clock jump even when no unit has a group: the
    entry does not depend on someone listening."""
    with make_client(db_url) as client:
        _last_in_march_and_april(client)
        advance(client, "P60D")  # past May's and June's briefings in one jump
        entries = unit_entries(client)
        assert [(e["level"], e["created_at"]) for e in entries] == [(2, "2026-05-06T09:00:00+08:00")]


def test_a_jump_longer_than_the_digest_catch_up_still_escalates(db_url):
    """Daily digests are written for a long jump's last 92 days only; a month's ranking,
    which may escalate, is never skipped (it used to be, and the 约谈 was lost)."""
    with make_client(db_url) as client:
        _last_in_march_and_april(client)
        set_clock(client, "2026-08-20T10:00:00+08:00")  # 139 days in one jump
        entries = unit_entries(client)
        assert (2, "2026-05-06T09:00:00+08:00") in [(e["level"], e["created_at"]) for e in entries]


TWO_LAGGARDS = (("P2", "hj"), ("P3", "yy"))


def test_units_sharing_the_last_place_are_all_named_and_escalated(db_url):
    """倒数第一 shared by two units names both (seed 004); all units equal names none."""
    with make_client(db_url) as client:
        city(client)
        create_unit(client, "yy", "延津县人民政府", parent="xx")
        for code, unit in (("P1", "wy"), ("P2", "hj"), ("P3", "yy")):
            create_project(client, code, unit)
        month_with_a_laggard(client, "2026-03-04T10:00:00+08:00", TWO_LAGGARDS)
        set_clock(client, "2026-04-01T10:00:00+08:00")
        with client.app.state.db.unit_of_work(readonly=True) as session:
            march, _ = briefing_context(session, date(2026, 3, 1), client.app.state.settings.tz)
        assert [last["name"] for last in march["lasts"]] == ["获嘉县人民政府", "延津县人民政府"]
        text = render("monthly_briefing", march, "https://duban.example.gov.cn").text
        assert "以下 2 个单位并列排名末位：获嘉县人民政府排名末位，予以通报批评。延津县人民政府排名末位" in text
        month_with_a_laggard(client, "2026-04-03T10:00:00+08:00", TWO_LAGGARDS)
        set_clock(client, "2026-05-08T10:00:00+08:00")
        entries = unit_entries(client)
        assert sorted((e["from_unit"], e["level"]) for e in entries) == [("hj", 2), ("yy", 2)]


def test_county_governments_and_city_departments_are_ranked_apart(db_url):
    """Seed 003 ranks 乡镇街道 and 市直单位 apart: one section per level, a last in each."""
    with make_client(db_url) as client:
        city(client)
        for code, name in (("xx-zrj", "市自然资源和规划局"), ("xx-jtj", "市交通运输局")):
            create_unit(client, code, name, level="city", kind="department", parent="xx")
        create_project(client, "P1", "wy")
        create_project(client, "P2", "hj")
        both = {"laggards": (("P2", "hj"), ("P1", "xx-jtj")), "good": (("P1", "wy"), ("P1", "xx-zrj"))}
        month_with_a_laggard(client, "2026-03-04T10:00:00+08:00", **both)
        set_clock(client, "2026-04-01T10:00:00+08:00")
        with client.app.state.db.unit_of_work(readonly=True) as session:
            march, ranked = briefing_context(session, date(2026, 3, 1), client.app.state.settings.tz)
        assert [(s["label"], [r["rank"] for r in s["rows"]]) for s in march["sections"]] == [
            ("县（市、区）", [1, 2]),
            ("市直单位", [1, 2]),
        ]
        assert [last["name"] for last in march["lasts"]] == ["获嘉县人民政府", "市交通运输局"]
        text = render("monthly_briefing", march, "https://duban.example.gov.cn").text
        assert "县（市、区）（2 个）\n1. 原阳县人民政府" in text and "市直单位（2 个）\n1. 市自然资源和规划局" in text
        # Each is last in its own ranking, not tied with the other.
        assert "并列" not in text
        assert ("县（市、区）中，获嘉县人民政府排名末位，予以通报批评。\n"
                "市直单位中，市交通运输局排名末位，予以通报批评。") in text
        markdown = render("monthly_briefing", march, "https://duban.example.gov.cn").markdown
        assert "予以通报批评。\n\n市直单位中，市交通运输局" in markdown  # two paragraphs, not one
        # A briefing written before sections carried their own last places still renders.
        old = {**march, "sections": [{k: v for k, v in s.items() if k != "lasts"} for s in march["sections"]]}
        old_text = render("monthly_briefing", old, "https://duban.example.gov.cn").text
        assert "以下 2 个单位并列排名末位：获嘉县人民政府排名末位" in old_text
        month_with_a_laggard(client, "2026-04-03T10:00:00+08:00", **both)
        set_clock(client, "2026-05-08T10:00:00+08:00")
        entries = unit_entries(client)
        assert sorted((e["from_unit"], e["level"]) for e in entries) == [("hj", 2), ("xx-jtj", 2)]


def test_the_leader_in_charge_of_the_unit_holds_its_interview_once_the_city_says_who(db_url):
    """分管领导约谈 goes to the office tagged `oversees:<unit>` (set later, by PATCH), not to
    the executive vice mayor; a rename shows in what the next messages say."""
    with make_client(db_url) as client:
        _last_in_march_and_april(client)
        renamed = ok(client.patch("/api/v1/units/xx-fsz-land", json={"name": "分管副市长办公室（自然资源、农业）",
                                                                     "tags": ["sector:用地", "oversees:hj"]},
                                  headers=ADMIN))
        assert renamed["tags"] == ["sector:用地", "oversees:hj"] and renamed["code"] == "xx-fsz-land"
        assert ok(client.get("/api/v1/units/xx-fsz-land", headers=ADMIN)) == renamed
        set_clock(client, "2026-05-08T10:00:00+08:00")
        (second,) = unit_entries(client)
        assert (second["level"], second["unit"], second["from_unit"]) == (2, "xx-fsz-land", "hj")
        assert "分管领导约谈" in second["detail"]


def test_a_wrong_change_to_a_unit_is_refused_and_changes_nothing(db_url):
    with make_client(db_url) as client:
        city(client)
        before = ok(client.get("/api/v1/units/wy", headers=ADMIN))
        for body in ({}, {"name": None}, {"name": ""}, {"tags": ["x" * 65]}, {"tags": [""]}, {"tags": "sector:用地"},
                     {"code": "wy2"}, {"parent": "hj"}, {"level": "city"}, {"kind": "department"}):
            answer = client.patch("/api/v1/units/wy", json=body, headers=ADMIN)
            assert answer.status_code == 422, (body, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
        assert client.patch("/api/v1/units/nowhere", json={"name": "x"}, headers=ADMIN).status_code == 404
        assert client.patch("/api/v1/units/wy", json={"name": "x"}, headers=create_key(client, "wy")).status_code == 403
        assert ok(client.get("/api/v1/units/wy", headers=ADMIN)) == before
        cleared = ok(client.patch("/api/v1/units/xx-zb", json={"tags": None}, headers=ADMIN))
        assert cleared["tags"] == [] and cleared["name"] == "市综合专班"
