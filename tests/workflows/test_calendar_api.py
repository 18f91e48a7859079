"""The working-day calendar over REST: sources per year, spans across the 2026 holidays, the
2027 warning, and an administrator loading 2027 moving the deadlines that counted days."""

from __future__ import annotations

from datetime import date

from sqlmodel import select

from service.models import Timer
from tests.helpers import (
    ADMIN,
    city,
    create_blocker,
    create_key,
    create_project,
    make_client,
    ok,
)
from workflows.calendar import WorkingDayCalendar, YearOverride


def _assigned(client, deadline: dict, workflow: str | None = None) -> dict:
    extra = {"workflow": workflow} if workflow else {}
    b = create_blocker(client, "P1", **extra)
    body = {"unit": "wy", "deadline": deadline} if deadline else {"unit": "wy"}
    return ok(client.post(f"/api/v1/blockers/{b['id']}/assign", json=body, headers=ADMIN))


def _detail(client, bid: int) -> dict:
    return ok(client.get(f"/api/v1/blockers/{bid}", headers=ADMIN))


def _timers(detail: dict) -> dict[str, str]:
    return {t["kind"]: t["due_at"] for t in detail["timers"]}


def _setup(client) -> None:
    city(client)
    create_project(client, "P1", "wy")


def test_years_and_their_sources(db_url):
    with make_client(db_url) as client:
        city(client)
        reader = create_key(client, "wy", scopes=("read",))
        y2026 = ok(client.get("/api/v1/calendar/2026", headers=reader))
        assert y2026["year"] == 2026 and y2026["source"] == "official"
        for make_up in ("2026-02-14", "2026-02-28", "2026-10-10"):
            assert make_up in y2026["workdays"]
        for holiday in ("2026-02-16", "2026-02-23", "2026-10-01", "2026-10-07"):
            assert holiday in y2026["holidays"]
        assert "2026-10-09" not in y2026["holidays"]
        expected = WorkingDayCalendar().year_info(2026)["working_days"]
        assert y2026["working_days"] == expected
        y2027 = ok(client.get("/api/v1/calendar/2027", headers=reader))
        assert y2027["source"] == "weekends-only"
        assert y2027["holidays"] == [] and y2027["workdays"] == []
        assert y2027["working_days"] == sum(
            1
            for o in range(date(2027, 1, 1).toordinal(), date(2028, 1, 1).toordinal())
            if date.fromordinal(o).weekday() < 5
        )
        assert client.get("/api/v1/calendar/1999", headers=reader).status_code == 404
        assert client.get("/api/v1/calendar/2027").status_code == 401


def test_spring_festival_2026_span_over_rest(db_url):
    # Thursday 2026-02-12: Friday 13th (1), make-up Saturday 14th (2), 15–23 holiday, Tuesday 24th (3).
    assert WorkingDayCalendar().add_working_days(date(2026, 2, 12), 3) == date(2026, 2, 24)
    with make_client(db_url, clock_start="2026-02-12T09:30:00+08:00") as client:
        _setup(client)
        b = _assigned(client, {"working_days": 3})
        assert (b["deadline"], b["due_at"]) == ("2026-02-24", "2026-02-24T23:59:59+08:00")
        assert b["warnings"] == []
        ok(client.post(f"/api/v1/blockers/{b['id']}/acknowledge", json={}, headers=ADMIN))
        timers = _timers(_detail(client, b["id"]))
        # One working day before the deadline is the make-up Saturday, three is Thursday 12th
        # 09:00 (already past when acknowledged at 09:30, so not planned).
        assert timers["remind_before_deadline_1"] == "2026-02-14T09:00:00+08:00"
        assert "remind_before_deadline_3" not in timers
        assert timers["deadline"] == "2026-02-24T23:59:59+08:00"


def test_national_day_2026_span_over_rest(db_url):
    # Wednesday 2026-09-30: 1–7 October holiday, Thursday 8th (1), Friday 9th (2), make-up Saturday 10th (3).
    assert WorkingDayCalendar().add_working_days(date(2026, 9, 30), 3) == date(2026, 10, 10)
    with make_client(db_url, clock_start="2026-09-30T09:30:00+08:00") as client:
        _setup(client)
        b = _assigned(client, {"working_days": 3})
        assert b["deadline"] == "2026-10-10"
        # Acknowledge within one working day: that is Thursday 8 October, not 1 October.
        assert _timers(_detail(client, b["id"]))["acknowledge_due"] == "2026-10-08T23:59:59+08:00"


def test_a_deadline_in_2027_warns_that_2027_is_not_loaded(db_url):
    with make_client(db_url, clock_start="2026-12-28T09:30:00+08:00") as client:
        _setup(client)
        inside = _assigned(client, {"working_days": 2})
        assert inside["deadline"] == "2026-12-30" and inside["warnings"] == []
        across = _assigned(client, {"working_days": 5})
        assert across["deadline"] == "2027-01-04"
        (warning,) = across["warnings"]
        assert "2027" in warning and "weekends-only" in warning
        by_date = _assigned(client, {"date": "2027-03-01"})
        assert len(by_date["warnings"]) == 1 and "2027" in by_date["warnings"][0]


def test_loading_2027_moves_deadlines_that_counted_working_days(db_url):
    # Wednesday 2026-12-30 + 3 working days: weekends only → Monday 2027-01-04; with
    # 2027-01-01 a holiday → Tuesday 2027-01-05.
    loaded = WorkingDayCalendar().with_override(
        2027, YearOverride(holidays=[date(2027, 1, 1)], workdays=[])
    )
    assert loaded.add_working_days(date(2026, 12, 30), 3) == date(2027, 1, 5)
    with make_client(db_url, clock_start="2026-12-30T09:30:00+08:00") as client:
        _setup(client)
        counted = _assigned(client, {"working_days": 3})
        assert counted["deadline"] == "2027-01-04"
        ok(client.post(f"/api/v1/blockers/{counted['id']}/acknowledge", json={}, headers=ADMIN))
        by_date = _assigned(client, {"date": "2027-01-04"})
        inside = _assigned(client, {"working_days": 1})  # Thursday 2026-12-31, untouched
        before = _detail(client, counted["id"])
        assert _timers(before)["deadline"] == "2027-01-04T23:59:59+08:00"
        assert _timers(before)["remind_before_deadline_1"] == "2027-01-01T09:00:00+08:00"

        unit_key = create_key(client, "wy", scopes=("read", "write"))
        body = {"holidays": ["2027-01-01"], "workdays": []}
        forbidden = client.put("/api/v1/calendar/2027", json=body, headers=unit_key)
        assert forbidden.status_code == 403
        assert ok(client.get("/api/v1/calendar/2027", headers=ADMIN))["source"] == "weekends-only"

        put = ok(client.put("/api/v1/calendar/2027", json=body, headers=ADMIN))
        assert put["source"] == "database" and put["holidays"] == ["2027-01-01"]
        assert put["moved_blockers"] == 1

        after = _detail(client, counted["id"])
        assert (after["deadline"], after["due_at"]) == ("2027-01-05", "2027-01-05T23:59:59+08:00")
        assert after["state"] == "supervised" and after["version"] == before["version"] + 1
        reschedule = after["timeline"][-1]
        assert reschedule["action"] == "reschedule" and reschedule["actor"] == "system:calendar"
        assert reschedule["payload"]["previous_deadline"] == "2027-01-04"
        assert reschedule["payload"]["deadline"] == "2027-01-05"
        assert reschedule["state_before"] == reschedule["state_after"] == "supervised"
        timers = _timers(after)
        assert timers["deadline"] == "2027-01-05T23:59:59+08:00"
        # One working day before Tuesday 5th is now Monday 4th (Friday 1st is a holiday).
        assert timers["remind_before_deadline_1"] == "2027-01-04T09:00:00+08:00"
        assert len(after["timers"]) == len(before["timers"])
        assert not any("2027" in w for w in after["warnings"]), after["warnings"]
        with client.app.state.db.unit_of_work(readonly=True) as session:
            rows = session.exec(
                select(Timer).where(
                    Timer.blocker_id == counted["id"],
                    Timer.kind == "deadline",
                    Timer.status != "fired",
                )
            ).all()
            by_status = {
                status: sorted(
                    (t.payload["state"], t.due_at.date().isoformat())
                    for t in rows
                    if t.status == status
                )
                for status in ("pending", "cancelled")
            }
            # (due_at is UTC: local 23:59:59 is 15:59:59 UTC the same day)
            assert by_status["pending"] == [("supervised", "2027-01-05")]
            assert ("supervised", "2027-01-04") in by_status["cancelled"]
        # A deadline given as a date, and one that never reached 2027, stay where they were.
        for other, deadline in ((by_date, "2027-01-04"), (inside, "2026-12-31")):
            unchanged = _detail(client, other["id"])
            assert unchanged["deadline"] == deadline and unchanged["version"] == other["version"]
            assert "reschedule" not in [e["action"] for e in unchanged["timeline"]]

        y2027 = ok(client.get("/api/v1/calendar/2027", headers=unit_key))
        assert (y2027["source"], y2027["holidays"]) == ("database", ["2027-01-01"])

        # Loading the same schedule again moves nothing.
        again = ok(client.put("/api/v1/calendar/2027", json=body, headers=ADMIN))
        assert again["moved_blockers"] == 0
        assert _detail(client, counted["id"])["version"] == after["version"]

        # Dropping the loaded year puts it back on weekends only, and the deadline back.
        assert client.delete("/api/v1/calendar/2027", headers=unit_key).status_code == 403
        dropped = ok(client.delete("/api/v1/calendar/2027", headers=ADMIN))
        assert (dropped["source"], dropped["moved_blockers"]) == ("weekends-only", 1)
        back = _detail(client, counted["id"])
        assert (back["deadline"], _timers(back)["remind_before_deadline_1"]) == (
            "2027-01-04",
            "2027-01-01T09:00:00+08:00",
        )
        gone = client.delete("/api/v1/calendar/2027", headers=ADMIN)
        assert gone.status_code == 404 and "weekends-only" in gone.json()["detail"]
        assert _detail(client, counted["id"])["version"] == back["version"]


def test_the_13710_default_deadline_moves_too(db_url):
    # Monday 2026-12-28 + 7 working days (the 13710 default): weekends only → Wednesday
    # 2027-01-06; with 2027-01-01 a holiday → Thursday 2027-01-07.
    with make_client(db_url, clock_start="2026-12-28T09:30:00+08:00") as client:
        _setup(client)
        b = _assigned(client, {}, workflow="w13710")
        assert b["deadline"] == "2027-01-06"
        put = ok(
            client.put("/api/v1/calendar/2027", json={"holidays": ["2027-01-01"]}, headers=ADMIN)
        )
        assert put["moved_blockers"] == 1
        after = _detail(client, b["id"])
        assert after["deadline"] == "2027-01-07"
        assert after["timeline"][-1]["action"] == "reschedule"


def test_a_bad_calendar_body_is_422_and_changes_nothing(db_url):
    with make_client(db_url, clock_start="2026-12-30T09:30:00+08:00") as client:
        _setup(client)
        b = _assigned(client, {"working_days": 3})
        bad_bodies = [
            {"holidays": ["2027-01-01", "2028-01-03"]},  # a date outside the year
            {"workdays": ["2026-12-26"]},
            {"holidays": ["2027-02-06"], "workdays": ["2027-02-06"]},  # both at once
            {"holidays": ["2027-01-02"], "workdays": ["2027-01-04"]},  # swapped: a Monday "made up"
            {"holidays": ["not-a-date"]},
            {"holidays": ["2027-01-01"], "surprise": True},  # unknown field
            {},  # would wipe the year: `holidays` must be given, if only as []
        ]
        for body in bad_bodies:
            response = client.put("/api/v1/calendar/2027", json=body, headers=ADMIN)
            assert response.status_code == 422, (body, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
        outside = client.put(
            "/api/v1/calendar/2027", json={"holidays": ["2028-01-03"]}, headers=ADMIN
        ).json()
        assert "2028-01-03" in outside["detail"] and "2027" in outside["detail"]
        swapped = client.put(
            "/api/v1/calendar/2027", json={"holidays": [], "workdays": ["2027-01-06"]}, headers=ADMIN
        ).json()
        assert swapped["field"] == "workdays"
        assert "2027-01-06 is a Wednesday" in swapped["detail"] and "Saturday or Sunday" in swapped["detail"]
        y2027 = ok(client.get("/api/v1/calendar/2027", headers=ADMIN))
        assert (y2027["source"], y2027["holidays"]) == ("weekends-only", [])
        after = _detail(client, b["id"])
        assert after["deadline"] == "2027-01-04" and after["version"] == b["version"]
        assert [e["action"] for e in after["timeline"]] == ["create", "assign"]
        assert client.put("/api/v1/calendar/1999", json={"holidays": []}, headers=ADMIN).status_code == 404


def test_a_new_holiday_moves_the_timers_counted_from_entering_a_state(db_url):
    with make_client(db_url, clock_start="2026-05-18T09:30:00+08:00") as client:  # Monday
        _setup(client)
        supervised = _assigned(client, {"working_days": 20})
        ok(client.post(f"/api/v1/blockers/{supervised['id']}/acknowledge", json={}, headers=ADMIN))
        waiting = _assigned(client, {"date": "2026-06-30"})  # acknowledge-by counts too
        assert _timers(_detail(client, supervised["id"]))["feedback_due"] == "2026-05-25T23:59:59+08:00"
        before = _timers(_detail(client, waiting["id"]))["acknowledge_due"]
        calendar = ok(client.get("/api/v1/calendar/2026", headers=ADMIN))
        body = {"holidays": [*calendar["holidays"], "2026-05-19", "2026-05-20"], "workdays": calendar["workdays"]}
        ok(client.put("/api/v1/calendar/2026", json=body, headers=ADMIN))
        after = _timers(_detail(client, supervised["id"]))
        assert after["feedback_due"] == "2026-05-27T23:59:59+08:00"  # two days later
        moved = _timers(_detail(client, waiting["id"]))["acknowledge_due"]
        assert moved > before and moved.startswith("2026-05-21")
        # A fixed-date deadline stays; the feedback step keeps its start and its number.
        assert _detail(client, waiting["id"])["deadline"] == "2026-06-30"


def _set(client, instant: str) -> None:
    ok(client.post("/api/v1/admin/clock", json={"set": instant}, headers=ADMIN))


def test_a_returned_blocker_keeps_the_later_deadline_when_the_calendar_changes(db_url):
    with make_client(db_url) as client:  # Monday 2026-03-02
        _setup(client)
        b = _assigned(client, {"working_days": 20})
        assert b["deadline"] == "2026-03-30"
        bid = b["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
        _set(client, "2026-03-03T10:00:00+08:00")
        ok(client.post(f"/api/v1/blockers/{bid}/report_resolved", json={"note": "已解决"}, headers=ADMIN))
        returned = ok(
            client.post(f"/api/v1/blockers/{bid}/verify", json={"satisfied": False, "note": "不满意"}, headers=ADMIN)
        )
        assert returned["deadline"] == "2026-03-30"  # 5 working days would be earlier: kept
        _set(client, "2026-03-16T10:00:00+08:00")
        calendar = ok(client.get("/api/v1/calendar/2026", headers=ADMIN))
        same = {"holidays": calendar["holidays"], "workdays": calendar["workdays"]}
        # Loading the same schedule moves nothing (it used to pull the deadline to 03-10,
        # already past, and escalate the blocker as overdue).
        assert ok(client.put("/api/v1/calendar/2026", json=same, headers=ADMIN))["moved_blockers"] == 0
        ok(client.post("/api/v1/admin/clock", json={"advance": "PT1M"}, headers=ADMIN))
        kept = _detail(client, bid)
        assert (kept["deadline"], kept["state"], kept["escalation_level"]) == ("2026-03-30", "supervised", 0)
        # Two new holidays move the assignment's 20 working days, the later of the two rules.
        later = {**same, "holidays": sorted([*same["holidays"], "2026-03-17", "2026-03-18"])}
        assert ok(client.put("/api/v1/calendar/2026", json=later, headers=ADMIN))["moved_blockers"] == 1
        assert _detail(client, bid)["deadline"] == "2026-04-01"


def test_a_calendar_change_recounts_reminders_and_warnings_of_deadlines_that_stay(db_url):
    with make_client(db_url, clock_start="2026-12-30T10:00:00+08:00") as client:
        _setup(client)
        by_date = _assigned(client, {"date": "2027-01-07"})
        by_count = _assigned(client, {"working_days": 4})
        assert by_count["deadline"] == "2027-01-05"
        for b in (by_date, by_count):
            ok(client.post(f"/api/v1/blockers/{b['id']}/acknowledge", json={}, headers=ADMIN))
            assert any("2027" in w for w in _detail(client, b["id"])["warnings"])
        assert _timers(_detail(client, by_date["id"]))["remind_before_deadline_3"] == "2027-01-04T09:00:00+08:00"
        assert _timers(_detail(client, by_count["id"]))["remind_before_deadline_1"] == "2027-01-04T09:00:00+08:00"
        body = {"holidays": ["2027-01-04"], "workdays": ["2027-01-02"]}  # a swap: 调休
        assert ok(client.put("/api/v1/calendar/2027", json=body, headers=ADMIN))["moved_blockers"] == 0
        # Neither deadline moved, but the working days before them did: no reminder on a holiday.
        date_timers = _timers(_detail(client, by_date["id"]))
        assert date_timers["remind_before_deadline_3"] == "2027-01-02T09:00:00+08:00"
        count_timers = _timers(_detail(client, by_count["id"]))
        assert count_timers["remind_before_deadline_1"] == "2027-01-02T09:00:00+08:00"
        assert count_timers["deadline"] == "2027-01-05T23:59:59+08:00"
        # 2027 is loaded: the warning that it is not goes.
        for b in (by_date, by_count):
            assert _detail(client, b["id"])["warnings"] == []
        ok(client.post("/api/v1/admin/clock", json={"advance": "P3D"}, headers=ADMIN))
        reminded = [e["at"] for e in _detail(client, by_count["id"])["timeline"] if e["action"] == "remind_deadline"]
        assert reminded == ["2026-12-31T09:00:00+08:00", "2027-01-02T09:00:00+08:00"]


def test_a_deadline_that_passed_stays_passed_when_the_calendar_changes(db_url):
    with make_client(db_url, clock_start="2026-12-30T10:00:00+08:00") as client:
        _setup(client)
        b = _assigned(client, {"working_days": 2})
        assert b["deadline"] == "2027-01-01"  # 2027 on weekends only
        ok(client.post(f"/api/v1/blockers/{b['id']}/acknowledge", json={}, headers=ADMIN))
        _set(client, "2027-01-02T10:00:00+08:00")
        assert _detail(client, b["id"])["state"] == "deadline"
        put = ok(client.put("/api/v1/calendar/2027", json={"holidays": ["2027-01-01"]}, headers=ADMIN))
        assert put["moved_blockers"] == 0
        # Not a state `deadline` (已逾期) that is not overdue: the escalation made stands.
        stays = _detail(client, b["id"])
        assert (stays["deadline"], stays["state"], stays["overdue"]) == ("2027-01-01", "deadline", True)


def test_a_correction_never_moves_a_deadline_into_the_past(db_url):
    with make_client(db_url) as client:  # Monday 2 March 2026
        _setup(client)
        b = _assigned(client, {"working_days": 10})
        assert b["deadline"] == "2026-03-16"
        ok(client.post(f"/api/v1/blockers/{b['id']}/acknowledge", json={}, headers=ADMIN))
        _set(client, "2026-03-13T10:00:00+08:00")
        calendar = ok(client.get("/api/v1/calendar/2026", headers=ADMIN))
        body = {"holidays": calendar["holidays"], "workdays": sorted([*calendar["workdays"], "2026-03-07", "2026-03-08"])}
        ok(client.put("/api/v1/calendar/2026", json=body, headers=ADMIN))  # counts to the 12th
        moved = _detail(client, b["id"])
        assert (moved["deadline"], moved["overdue"], moved["state"]) == ("2026-03-13", False, "supervised")
        ok(client.post("/api/v1/admin/clock", json={"advance": "PT1H"}, headers=ADMIN))
        assert _detail(client, b["id"])["escalation_level"] == 0


def test_a_correction_never_moves_a_timer_into_the_past(db_url):
    """Feedback due every 5 working days from acknowledgement: make-up days added behind
    the clock would put it in the past, to fire at once as 'feedback late'. It keeps its
    own moment instead, and nothing is due right after the correction."""
    with make_client(db_url) as client:  # Monday 2 March 2026
        _setup(client)
        b = _assigned(client, {"working_days": 20})
        ok(client.post(f"/api/v1/blockers/{b['id']}/acknowledge", json={}, headers=ADMIN))
        before = _timers(_detail(client, b["id"]))["feedback_due"]
        assert before.startswith("2026-03-09")
        _set(client, "2026-03-09T10:00:00+08:00")
        calendar = ok(client.get("/api/v1/calendar/2026", headers=ADMIN))
        body = {"holidays": calendar["holidays"], "workdays": sorted([*calendar["workdays"], "2026-03-07", "2026-03-08"])}
        ok(client.put("/api/v1/calendar/2026", json=body, headers=ADMIN))  # would count to the 6th
        detail = _detail(client, b["id"])
        assert _timers(detail)["feedback_due"] == before
        assert all(t["due_at"] > "2026-03-09T10:00:00+08:00" for t in detail["timers"])
