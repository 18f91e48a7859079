"""Reports, request limits and the escalation queue's jurisdiction."""

from __future__ import annotations

import csv
import io

from tests.helpers import (
    ADMIN,
    advance,
    city,
    create_blocker,
    create_key,
    create_officer,
    create_project,
    create_unit,
    make_client,
    ok,
    set_clock,
)


def _loop(client):
    create_project(client, "P1", "wy")
    ids = []
    for _ in range(3):
        b = create_blocker(client, "P1")
        ok(
            client.post(
                f"/api/v1/blockers/{b['id']}/assign",
                json={"unit": "wy", "deadline": {"working_days": 2}},
                headers=ADMIN,
            )
        )
        ids.append(b["id"])
    ok(client.post(f"/api/v1/blockers/{ids[0]}/acknowledge", json={}, headers=ADMIN))
    ok(
        client.post(
            f"/api/v1/blockers/{ids[0]}/report_resolved", json={"note": "ok"}, headers=ADMIN
        )
    )
    ok(
        client.post(
            f"/api/v1/blockers/{ids[0]}/verify",
            json={"satisfied": True, "note": "满意"},
            headers=ADMIN,
        )
    )
    ok(client.post(f"/api/v1/blockers/{ids[1]}/acknowledge", json={}, headers=ADMIN))
    return ids


def test_unit_report_and_project_lights(db_url):
    with make_client(db_url) as client:
        city(client)
        ids = _loop(client)
        advance(client, "P5D")  # ids[1] and ids[2] pass their deadline and escalate
        rows = ok(client.get("/api/v1/reports/units?from=2026-03-01&to=2026-03-31", headers=ADMIN))["items"]
        wy = next(r for r in rows if r["unit"] == "wy")
        assert wy["assigned"] == 3 and wy["resolved"] == 1 and wy["resolved_on_time"] == 1
        assert wy["overdue"] == 2 and wy["satisfaction_rate"] == 1.0 and wy["rank"] == 1
        projects = ok(client.get("/api/v1/reports/projects", headers=ADMIN))["items"]
        assert projects[0]["light"] == "red" and projects[0]["overdue_blockers"] == 2
        assert (
            ok(client.get("/api/v1/blockers?overdue=true&project=P1", headers=ADMIN))["items"][0][
                "id"
            ]
            == ids[1]
        )
        bad = client.get("/api/v1/reports/units?from=2026-03-31&to=2026-03-01", headers=ADMIN)
        assert bad.status_code == 422


def test_escalation_queue_is_per_level(db_url):
    with make_client(db_url) as client:
        city(client)
        _loop(client)
        advance(client, "P5D")
        tf = create_key(client, "xx-zb")
        county = create_key(client, "wy")
        assert len(ok(client.get("/api/v1/escalations", headers=tf))["items"]) == 2
        assert ok(client.get("/api/v1/escalations", headers=county))["items"] == []
        entry = ok(client.get("/api/v1/escalations", headers=tf))["items"][0]
        assert (
            client.post(
                f"/api/v1/escalations/{entry['id']}/acknowledge", json={}, headers=county
            ).status_code
            == 403  # another level's entry: an action outside the key's queue
        )
        ok(
            client.post(
                f"/api/v1/escalations/{entry['id']}/acknowledge", json={"note": "收到"}, headers=tf
            )
        )
        again = client.post(f"/api/v1/escalations/{entry['id']}/acknowledge", json={}, headers=tf)
        assert again.status_code == 409 and again.json()["allowed_actions"] == ["handle"]
        timeline = ok(client.get(f"/api/v1/blockers/{entry['blocker_id']}", headers=ADMIN))[
            "timeline"
        ]
        assert timeline[-1]["action"] == "escalation_acknowledge"
        # Who acted reads as a person and a unit, not only as the key's id.
        liu = create_officer(client, "xx-zb", "刘七", "13900000017")
        desk = create_key(client, "xx-zb", officer_id=liu["id"])
        second = ok(client.get("/api/v1/escalations?status=open", headers=tf))["items"][0]
        ok(client.post(f"/api/v1/escalations/{second['id']}/acknowledge", json={}, headers=desk))
        ok(client.post(f"/api/v1/escalations/{second['id']}/handle", json={}, headers=ADMIN))
        ok(client.post(f"/api/v1/escalations/{entry['id']}/handle", json={}, headers=tf))
        by_id = {e["id"]: e for e in ok(client.get("/api/v1/escalations?status=handled", headers=ADMIN))["items"]}
        assert by_id[second["id"]]["acknowledged_by"].startswith("key:")
        assert by_id[second["id"]]["acknowledged_by_name"] == "刘七（市综合专班）"
        assert by_id[second["id"]]["handled_by_name"] == "系统管理员"
        assert by_id[entry["id"]]["acknowledged_by_name"] == "市综合专班"  # a key without an officer
        assert by_id[entry["id"]]["handled_by_name"] == "市综合专班"


def test_body_limit_and_rate_limit(tmp_path, sqlite_url):
    with make_client(sqlite_url, max_body_bytes=2000, rate_limit_per_minute=60) as client:
        big = client.post(
            "/api/v1/units",
            json={"code": "x", "name": "n" * 5000, "level": "city", "kind": "government"},
            headers=ADMIN,
        )
        assert big.status_code == 413 and big.headers["content-type"].startswith(
            "application/problem+json"
        )
        statuses = [client.get("/api/v1/units", headers=ADMIN).status_code for _ in range(15)]
        assert 429 in statuses
        limited = next(
            r
            for r in (client.get("/api/v1/units", headers=ADMIN) for _ in range(3))
            if r.status_code == 429
        )
        assert int(limited.headers["retry-after"]) >= 1


def test_simulation_clock_is_absent_in_system_mode(sqlite_url):
    with make_client(sqlite_url, clock="system") as client:
        assert (
            client.post("/api/v1/admin/clock", json={"advance": "P1D"}, headers=ADMIN).status_code
            == 404
        )
        assert client.get("/api/v1/admin/clock", headers=ADMIN).status_code == 404


def test_clock_advances_by_any_iso_8601_duration(sqlite_url):
    """Years and months count on the local calendar: 31 January + P1M is 28 February."""
    with make_client(sqlite_url, clock_start="2027-01-31T09:00:00+08:00") as client:
        steps = [
            ("P1M", "2027-02-28T09:00:00+08:00"),
            ("P1Y1M", "2028-03-28T09:00:00+08:00"),
            ("P1W", "2028-04-04T09:00:00+08:00"),
            ("P1DT2H30M", "2028-04-05T11:30:00+08:00"),
            ("PT90S", "2028-04-05T11:31:30+08:00"),
            ("P1MT1H", "2028-05-05T12:31:30+08:00"),
        ]
        for duration, expected in steps:
            assert advance(client, duration)["now"] == expected, duration
        for bad in ("P", "PT", "P1", "1D", "P1DT", "P-1D", "P11Y", "P99999999999999D", "PT1.5M"):
            r = client.post("/api/v1/admin/clock", json={"advance": bad}, headers=ADMIN)
            assert r.status_code == 422 and "advance" in r.json()["detail"], (bad, r.text)
        assert ok(client.get("/api/v1/admin/clock", headers=ADMIN))["now"] == steps[-1][1]


def test_unit_rates_count_blockers_over_the_period(db_url):
    """按期办结率, 响应率 and the rest over 9–31 March, worked out by hand below."""
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        create_project(client, "P2", "hj")

        def new(project: str, unit: str, days: int) -> int:
            bid = create_blocker(client, project)["id"]
            body = {"unit": unit, "deadline": {"working_days": days}}
            ok(client.post(f"/api/v1/blockers/{bid}/assign", json=body, headers=ADMIN))
            return bid

        def act(bid: int, action: str, **body) -> None:
            ok(client.post(f"/api/v1/blockers/{bid}/{action}", json=body, headers=ADMIN))

        # Before the period (Mon 2 March): Z1 assigned, acknowledged and resolved on time;
        # Q1 assigned to a department that then does nothing in the period.
        z1 = new("P1", "wy", 3)
        act(z1, "acknowledge")
        act(z1, "report_resolved", note="已解决")
        act(new("P1", "wy-zrzy", 20), "acknowledge")
        set_clock(client, "2026-03-06T09:30:00+08:00")
        z3 = new("P1", "wy", 10)  # assigned Friday, acknowledged on time inside the period
        set_clock(client, "2026-03-09T00:30:00+08:00")
        act(z3, "acknowledge")
        set_clock(client, "2026-03-09T09:30:00+08:00")
        z2, w1, w2 = new("P1", "wy", 5), new("P1", "wy", 5), new("P1", "wy", 2)
        h1 = new("P2", "hj", 5)
        new("P2", "hj", 2)  # h2: never acknowledged
        for bid in (z2, w1, w2, h1):
            act(bid, "acknowledge")
        act(w1, "report_resolved", note="已解决")
        act(h1, "report_resolved", note="已解决")
        set_clock(client, "2026-03-10T09:30:00+08:00")
        act(z1, "verify", satisfied=True, note="满意")
        act(z1, "close")
        act(h1, "verify", satisfied=False, note="企业不满意")
        act(h1, "report_resolved", note="已整改")
        act(h1, "verify", satisfied=True, note="满意")
        set_clock(client, "2026-03-12T09:30:00+08:00")  # w2 and h2 passed 11 March
        act(w2, "report_resolved", note="逾期后办结")

        rows = ok(client.get("/api/v1/reports/units?from=2026-03-09&to=2026-03-31", headers=ADMIN))["items"]
        got = {r["unit"]: r for r in rows}
        keys = ("assigned", "acknowledged_on_time", "resolved", "resolved_on_time", "overdue",
                "returned", "verifications", "response_rate", "on_time_rate",
                "satisfaction_rate", "average_days_to_close", "open_blockers", "rank")
        table = {unit: tuple(got[unit][k] for k in keys) for unit in got}
        assert table == {
            # z2 w1 w2 assigned and acknowledged on time (z3's acknowledgement belongs to an
            # assignment before the period); w1 resolved in time, w2 after its deadline: 1/2;
            # z1 verified and closed 8 days after its assignment.
            "wy": (3, 3, 2, 1, 1, 0, 1, 1.0, 0.5, 1.0, 8.0, 4, 1),
            # h1 acknowledged, h2 not: 1/2; h1 resolved in time twice (one blocker), h2 late.
            "hj": (2, 1, 1, 1, 1, 1, 2, 0.5, 0.5, 0.5, None, 2, 2),
            # nothing in the period, one open blocker: listed last, nothing to rank it by.
            "wy-zrzy": (0, 0, 0, 0, 0, 0, 0, None, None, None, None, 1, None),
        }


def test_project_lights_show_risk_not_authority(db_url):
    """红黄绿灯: a city-authority blocker on schedule is green; yellow when due within 3
    working days or escalated above its starting level; red once overdue."""
    with make_client(db_url) as client:
        city(client)
        for code in ("P1", "P2"):
            create_project(client, code, "wy")

        def light(code: str) -> tuple[str, str]:
            one = ok(client.get(f"/api/v1/projects/{code}", headers=ADMIN))["light"]
            listed = ok(client.get("/api/v1/reports/projects", headers=ADMIN))["items"]
            return one, next(p["light"] for p in listed if p["project"] == code)

        city_level = create_blocker(client, "P1", authority_level="city")["id"]
        body = {"unit": "wy", "deadline": {"working_days": 20}}
        b = ok(client.post(f"/api/v1/blockers/{city_level}/assign", json=body, headers=ADMIN))
        assert b["escalation_level"] == 1 and light("P1") == ("green", "green")
        ok(client.post(f"/api/v1/blockers/{city_level}/request_escalation",
                       json={"reason": "需市级层面协调"}, headers=ADMIN))
        assert light("P1") == ("yellow", "yellow")
        # Assigned Monday 2 March with 5 working days: due Monday 9 March.
        soon = create_blocker(client, "P2")["id"]
        body = {"unit": "wy", "deadline": {"working_days": 5}}
        ok(client.post(f"/api/v1/blockers/{soon}/assign", json=body, headers=ADMIN))
        ok(client.post(f"/api/v1/blockers/{soon}/acknowledge", json={}, headers=ADMIN))
        assert light("P2") == ("green", "green")
        set_clock(client, "2026-03-04T09:30:00+08:00")  # 3 working days left
        assert light("P2") == ("yellow", "yellow")
        set_clock(client, "2026-03-10T09:30:00+08:00")
        assert light("P2") == ("red", "red")


def test_everything_created_carries_the_business_time(sqlite_url):
    """With the simulation clock, created_at follows it, as the blockers and events do."""
    with make_client(sqlite_url) as client:
        city(client)
        set_clock(client, "2026-03-20T10:00:00+08:00")
        created = [
            create_project(client, "P9", "wy"),
            ok(client.post("/api/v1/units", json={"code": "wy-x", "name": "乡", "level": "township",
                                                  "kind": "government", "parent": "wy"}, headers=ADMIN), 201),
            ok(client.post("/api/v1/officers", json={"name": "王五", "mobile": "13700000009", "unit": "wy",
                                                     "role": "staff"}, headers=ADMIN), 201),
            ok(client.post("/api/v1/channels", json={"unit": "wy", "kind": "wecom",
                                                     "url": "http://127.0.0.1:9/cgi-bin/webhook/send?key=k"},
                           headers=ADMIN), 201),
            ok(client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/h", "secret": "s3cret-123",
                                                     "events": ["*"]}, headers=ADMIN), 201),
            ok(client.post("/api/v1/api-keys", json={"name": "k", "unit": "wy", "scopes": ["read"]},
                           headers=ADMIN), 201),
            create_blocker(client, "P9"),
        ]
        assert [c["created_at"] for c in created] == ["2026-03-20T10:00:00+08:00"] * len(created)


def test_reads_return_an_etag(sqlite_url):
    """A blocker's ETag is its version (for If-Match); other reads get a weak one of the body."""
    with make_client(sqlite_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        first = client.get("/api/v1/projects/P1", headers=ADMIN)
        again = client.get("/api/v1/projects/P1", headers=ADMIN)
        assert first.headers["etag"].startswith('W/"') and first.headers["etag"] == again.headers["etag"]
        bid = create_blocker(client, "P1")["id"]
        changed = client.get("/api/v1/projects/P1", headers=ADMIN)  # one more open blocker
        assert changed.headers["etag"] != first.headers["etag"]
        assert client.get(f"/api/v1/blockers/{bid}", headers=ADMIN).headers["etag"] == '"1"'
        for path in ("/api/v1/units/wy", "/api/v1/blockers", "/api/v1/escalations", "/api/v1/calendar/2026"):
            assert client.get(path, headers=ADMIN).headers["etag"].startswith('W/"'), path
        assert "etag" not in client.get("/api/v1/units/nope", headers=ADMIN).headers


def test_an_acknowledgement_not_yet_due_is_not_counted_missed(db_url):
    with make_client(db_url, clock_start="2026-03-31T10:00:00+08:00") as client:  # Tuesday
        city(client)
        create_project(client, "P1", "wy")
        bid = create_blocker(client, "P1")["id"]
        body = {"unit": "wy", "deadline": {"working_days": 10}}
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json=body, headers=ADMIN))

        def march() -> dict:
            rows = ok(client.get("/api/v1/reports/units?from=2026-03-01&to=2026-03-31", headers=ADMIN))["items"]
            wy = next(r for r in rows if r["unit"] == "wy")
            return {k: wy[k] for k in ("assigned", "awaiting_acknowledgement", "response_rate")}

        assert march() == {"assigned": 1, "awaiting_acknowledgement": 1, "response_rate": None}
        set_clock(client, "2026-04-01T10:00:00+08:00")  # acknowledged in time, the next day
        ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
        assert march() == {"assigned": 1, "awaiting_acknowledgement": 0, "response_rate": 1.0}


def test_a_tie_for_last_place_names_no_one(db_url):
    from sqlmodel import select

    from service.models import Notification

    with make_client(db_url) as client:
        city(client)
        for unit in ("wy", "hj"):
            create_project(client, f"P-{unit}", unit)
            ok(client.post("/api/v1/channels", json={"unit": unit, "kind": "wecom",
                                                     "url": f"http://127.0.0.1:9/cgi-bin/webhook/send?key={unit}"},
                           headers=ADMIN), 201)
            bid = create_blocker(client, f"P-{unit}")["id"]
            ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": unit, "deadline": {"working_days": 5}},
                           headers=ADMIN))
            ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
            ok(client.post(f"/api/v1/blockers/{bid}/report_resolved", json={"note": "已办"}, headers=ADMIN))
        set_clock(client, "2026-04-01T09:30:00+08:00")
        with client.app.state.db.unit_of_work(readonly=True) as session:
            briefings = session.exec(select(Notification).where(Notification.kind == "monthly_briefing")).all()
        assert len(briefings) == 2  # the two counties' groups (their taskforce has none)
        for row in briefings:
            assert row.context["last"] is None and len(row.context["rows"]) == 2
            assert [r["rank"] for r in row.context["rows"]] == [1, 1]  # tied: one place
        rows = ok(client.get("/api/v1/reports/units?from=2026-03-01&to=2026-03-31", headers=ADMIN))["items"]
        assert {r["unit"]: r["rank"] for r in rows} == {"wy": 1, "hj": 1}


def test_nothing_due_is_not_ranked_below_an_overdue_blocker(db_url):
    """hj acknowledged in time and its deadline is months away; wy ignored its blocker
    and let it go overdue. wy, not hj, is last."""
    with make_client(db_url, clock_start="2026-11-02T10:00:00+08:00") as client:  # Monday
        city(client)
        for unit, deadline in (("hj", {"date": "2026-12-31"}), ("wy", {"working_days": 3})):
            create_project(client, f"P-{unit}", unit)
            bid = create_blocker(client, f"P-{unit}")["id"]
            ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": unit, "deadline": deadline},
                           headers=ADMIN))
            if unit == "hj":
                ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
        set_clock(client, "2026-12-01T10:00:00+08:00")
        rows = ok(client.get("/api/v1/reports/units?from=2026-11-01&to=2026-11-30", headers=ADMIN))["items"]
        ranked = {r["unit"]: (r["rank"], r["on_time_rate"], r["response_rate"]) for r in rows}
        assert ranked["hj"] == (1, None, 1.0) and ranked["wy"] == (2, 0.0, 0.0)
        # In December nothing was assigned to hj and nothing came due: listed (an open
        # blocker), with nothing to rank it by. wy's blocker is still overdue: it counts in
        # December too, so wy cannot leave the ranking by leaving it alone.
        rows = ok(client.get("/api/v1/reports/units?from=2026-12-01&to=2026-12-31", headers=ADMIN))["items"]
        ranked = {r["unit"]: (r["rank"], r["overdue"], r["on_time_rate"]) for r in rows}
        assert ranked == {"hj": (None, 0, None), "wy": (1, 1, 0.0)}


def test_a_units_key_sees_its_place_in_the_city_and_a_withdrawal_asks_no_answer(db_url):
    with make_client(db_url) as client:  # Monday 2 March 2026
        city(client)
        bids = {}
        for unit in ("wy", "hj"):
            create_project(client, f"P-{unit}", unit)
            bids[unit] = [create_blocker(client, f"P-{unit}")["id"] for _ in range(2)]
            for bid in bids[unit]:
                ok(client.post(f"/api/v1/blockers/{bid}/assign",
                               json={"unit": unit, "deadline": {"working_days": 5}}, headers=ADMIN))
        for bid in bids["wy"]:
            ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
        ok(client.post(f"/api/v1/blockers/{bids['hj'][0]}/acknowledge", json={}, headers=ADMIN))
        # hj's second blocker is withdrawn before anyone had to answer it.
        ok(client.post(f"/api/v1/blockers/{bids['hj'][1]}/withdraw", json={"reason": "项目调整"}, headers=ADMIN))
        set_clock(client, "2026-03-20T10:00:00+08:00")  # both of wy's blockers are overdue
        march = "/api/v1/reports/units?from=2026-03-01&to=2026-03-31"
        city_wide = {r["unit"]: r for r in ok(client.get(march, headers=ADMIN))["items"]}
        hj = city_wide["hj"]
        assert (hj["assigned"], hj["awaiting_acknowledgement"], hj["response_rate"]) == (2, 0, 1.0)
        assert (city_wide["wy"]["rank"], hj["rank"]) == (2, 1)
        # wy's own key is told wy is second in the city, not first among the units it sees.
        (own,) = ok(client.get(march, headers=create_key(client, "wy")))["items"]
        assert (own["unit"], own["rank"], own["overdue"]) == ("wy", 2, 2)


def test_a_project_reads_the_same_from_both_endpoints_for_every_key(db_url):
    with make_client(db_url) as client:
        city(client)
        create_unit(client, "xx-zrj", "市自然资源和规划局", level="city", kind="department", parent="xx")
        create_project(client, "P1", "wy")
        mine = {}
        for unit in ("xx-zrj", "wy"):
            mine[unit] = create_blocker(client, "P1")["id"]
            ok(client.post(f"/api/v1/blockers/{mine[unit]}/assign",
                           json={"unit": unit, "deadline": {"working_days": 2}}, headers=ADMIN))
        advance(client, "P5D")  # both overdue: red
        for unit in ("xx-zrj", "wy"):
            key = create_key(client, unit)
            project = ok(client.get("/api/v1/projects/P1", headers=key))
            # Only the blockers this key may open, though the light counts them all.
            assert [b["id"] for b in project["blockers"]] == [mine[unit]], unit
            assert all(client.get(f"/api/v1/blockers/{b['id']}", headers=key).status_code == 200
                       for b in project["blockers"])
            (row,) = ok(client.get("/api/v1/reports/projects", headers=key))["items"]
            assert (row["project"], row["light"], row["open_blockers"]) == ("P1", project["light"], 2), unit
            assert row["light"] == "red"
            assert [p["code"] for p in ok(client.get("/api/v1/projects", headers=key))["items"]] == ["P1"]


def test_the_unit_report_as_a_spreadsheet_holds_the_same_rows(db_url):
    with make_client(db_url) as client:  # Monday 2 March 2026
        city(client)
        create_unit(client, "xx-evil", "=HYPERLINK(\"http://x\")", level="city", kind="department", parent="xx")
        for unit, project in (("wy", "P1"), ("xx-evil", "P1")):
            if unit == "wy":
                create_project(client, project, unit)
            bid = create_blocker(client, project)["id"]
            ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": unit, "deadline": {"working_days": 2}},
                           headers=ADMIN))
            if unit == "wy":
                ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
        advance(client, "P5D")
        period = {"from": "2026-03-01", "to": "2026-03-31"}
        rows = ok(client.get("/api/v1/reports/units", params=period, headers=ADMIN))["items"]
        sheet = client.get("/api/v1/reports/units/export", params=period, headers=ADMIN)
        assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/csv")
        assert "attachment" in sheet.headers["content-disposition"]
        assert sheet.content.startswith("\ufeff".encode())  # Excel reads it as UTF-8
        table = list(csv.reader(io.StringIO(sheet.content.decode("utf-8-sig"))))
        assert table[0][:4] == ["排名", "单位代码", "单位名称", "层级"] and "按期办结率" in table[0]
        assert [(r[1], r[0]) for r in table[1:]] == [(r["unit"], str(r["rank"] or "")) for r in rows]
        by_unit = {r[1]: dict(zip(table[0], r, strict=True)) for r in table[1:]}
        assert by_unit["wy"]["响应率"] == "100.0%" and by_unit["wy"]["层级"] == "县（市、区）"
        assert by_unit["xx-evil"]["单位名称"] == "'=HYPERLINK(\"http://x\")"  # text, not a formula
        bad = client.get("/api/v1/reports/units/export", params={"from": "2026-03-31", "to": "2026-03-01"},
                         headers=ADMIN)
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")


def test_reports_are_pages_like_every_list(db_url):
    with make_client(db_url) as client:
        city(client)
        for unit in ("wy", "hj"):
            create_project(client, f"P-{unit}", unit)
            bid = create_blocker(client, f"P-{unit}")["id"]
            ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": unit, "deadline": {"working_days": 5}},
                           headers=ADMIN))
        for path in ("/api/v1/reports/units?from=2026-03-01&to=2026-03-31", "/api/v1/reports/projects?"):
            whole = ok(client.get(path, headers=ADMIN))
            assert len(whole["items"]) == 2 and whole["next_cursor"] is None
            first = ok(client.get(f"{path}&limit=1", headers=ADMIN))
            assert first["next_cursor"]
            second = ok(client.get(f"{path}&limit=1&cursor={first['next_cursor']}", headers=ADMIN))
            assert first["items"] + second["items"] == whole["items"] and second["next_cursor"] is None
            assert ok(client.get(f"{path}&limit=501", headers=ADMIN))["items"] == whole["items"]  # capped
            assert client.get(f"{path}&limit=0", headers=ADMIN).status_code == 422


def test_a_page_larger_than_500_is_a_page_of_500(sqlite_url):
    from service.models import Unit

    with make_client(sqlite_url) as client:
        city(client)
        with client.app.state.db.unit_of_work() as session:
            session.add_all(Unit(code=f"t{n}", name=f"乡镇{n}", level="township", kind="government",
                                 path=f"/t{n}/") for n in range(520))
        page = ok(client.get("/api/v1/units", params={"limit": 100000}, headers=ADMIN))
        assert len(page["items"]) == 500 and page["next_cursor"]
