"""The 13710 variant (1 日签收、3 日反馈、7 日办结、复杂事项 1 个月) over REST with the
simulation clock, on both databases; the default workflow, run the same way, differs."""

from __future__ import annotations

from datetime import datetime

from tests.helpers import (
    ADMIN,
    advance,
    city,
    create_blocker,
    create_key,
    create_project,
    make_client,
    ok,
)


def set_clock(client, instant: str) -> dict:
    """Move the simulation clock forward to `instant` (firing what falls due on the way)."""
    now = datetime.fromisoformat(ok(client.get("/api/v1/admin/clock", headers=ADMIN))["now"])
    seconds = (datetime.fromisoformat(instant) - now).total_seconds()
    assert seconds >= 0, f"the clock is at {now}, after {instant}"
    return advance(client, f"PT{int(seconds)}S") if seconds else {"now": instant}


def _blocker(client, workflow: str | None = "w13710") -> dict:
    extra = {"workflow": workflow} if workflow else {}
    return create_blocker(client, "P1", **extra)


def _assign(client, bid: int, **body) -> dict:
    return ok(
        client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", **body}, headers=ADMIN)
    )


def _detail(client, bid: int) -> dict:
    return ok(client.get(f"/api/v1/blockers/{bid}", headers=ADMIN))


def _timer(detail: dict, kind: str) -> dict:
    (timer,) = [t for t in detail["timers"] if t["kind"] == kind]
    return timer


def _actions(detail: dict) -> list[str]:
    return [e["action"] for e in detail["timeline"]]


def test_13710_deadlines_default_to_7_working_days_or_a_month(db_url):
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        b = _blocker(client)
        assert b["workflow"] == "w13710" and b["state"] == "collected"
        # Monday 2026-03-02 09:30, no deadline given: 7 working days → Wednesday 2026-03-11.
        b = _assign(client, b["id"])
        assert (b["state"], b["complexity"], b["deadline"]) == (
            "assigned",
            "ordinary",
            "2026-03-11",
        )
        assert b["due_at"] == "2026-03-11T23:59:59+08:00" and b["warnings"] == []
        assign_event = _detail(client, b["id"])["timeline"][-1]
        assert assign_event["payload"]["deadline_date"] == "2026-03-11"
        # An explicit deadline still wins.
        explicit = _assign(client, _blocker(client)["id"], deadline={"working_days": 3})
        assert explicit["deadline"] == "2026-03-05"
        # Complex (复杂事项): a month, to the next working day on or after the same date.
        # Wednesday 2026-03-04 → Saturday 2026-04-04, inside Qingming (4-6 April) → Tuesday 7 April.
        set_clock(client, "2026-03-04T10:00:00+08:00")
        complex_ = _assign(client, _blocker(client)["id"], complexity="complex")
        assert (complex_["complexity"], complex_["deadline"]) == ("complex", "2026-04-07")
        # Monday 2026-03-30 → Thursday 2026-04-30, a working day: the same date.
        set_clock(client, "2026-03-30T10:00:00+08:00")
        assert _assign(client, _blocker(client)["id"], complexity="complex")["deadline"] == (
            "2026-04-30"
        )
        # Tuesday 2026-09-01 → 1 October, National Day → Thursday 2026-10-08.
        set_clock(client, "2026-09-01T10:00:00+08:00")
        assert _assign(client, _blocker(client)["id"], complexity="complex")["deadline"] == (
            "2026-10-08"
        )
        listed = ok(client.get("/api/v1/blockers?limit=10", headers=ADMIN))["items"]
        assert {item["workflow"] for item in listed} == {"w13710"} and len(listed) == 5


def test_13710_acknowledge_the_same_working_day_by_1800(db_url):
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        bid = _assign(client, _blocker(client)["id"])["id"]
        due = _timer(_detail(client, bid), "acknowledge_due")
        assert (due["due_at"], due["action"]) == ("2026-03-02T18:00:00+08:00", "acknowledge_missed")
        set_clock(client, "2026-03-02T17:59:00+08:00")
        assert "acknowledge_missed" not in _actions(_detail(client, bid))
        # 18:00 the same evening, not acknowledged: the first miss reminds (no escalation yet).
        set_clock(client, "2026-03-02T18:00:00+08:00")
        detail = _detail(client, bid)
        (missed,) = [e for e in detail["timeline"] if e["action"] == "acknowledge_missed"]
        assert missed["at"] == "2026-03-02T18:00:00+08:00" and missed["actor"] == "system:timer"
        assert detail["escalation_level"] == 0 and detail["state"] == "assigned"
        assert _timer(detail, "acknowledge_due")["due_at"] == "2026-03-03T18:00:00+08:00"
        # The second miss, a working day later, escalates to the general taskforce.
        set_clock(client, "2026-03-03T18:00:00+08:00")
        detail = _detail(client, bid)
        assert _actions(detail).count("acknowledge_missed") == 2
        assert detail["escalation_level"] == 1
        queue = ok(client.get("/api/v1/escalations", headers=ADMIN))["items"]
        assert [(q["blocker_id"], q["reason"], q["unit"]) for q in queue] == [
            (bid, "unacknowledged", "xx-zb")
        ]


def test_13710_acknowledged_in_time_sends_no_reminder(db_url):
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        bid = _assign(client, _blocker(client)["id"])["id"]
        set_clock(client, "2026-03-02T17:00:00+08:00")
        ok(
            client.post(
                f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=create_key(client, "wy")
            )
        )
        set_clock(client, "2026-03-03T19:00:00+08:00")
        detail = _detail(client, bid)
        assert detail["state"] == "supervised" and "acknowledge_missed" not in _actions(detail)
        assert detail["escalation_level"] == 0


def test_13710_after_hours_and_weekend_assignments_remind_before_they_escalate(db_url):
    """Acknowledge-by moves to the next working day's 18:00; the escalating second step
    comes a working day after the reminder, never at the same moment."""
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        set_clock(client, "2026-03-02T19:00:00+08:00")  # Monday evening
        evening = _assign(client, _blocker(client)["id"])["id"]
        set_clock(client, "2026-03-07T10:00:00+08:00")  # Saturday
        saturday = _assign(client, _blocker(client)["id"])["id"]
        assert _timer(_detail(client, saturday), "acknowledge_due")["due_at"] == (
            "2026-03-09T18:00:00+08:00"
        )
        # The evening one was reminded on Tuesday 18:00 and escalated on Wednesday 18:00.
        detail = _detail(client, evening)
        missed = [e["at"] for e in detail["timeline"] if e["action"] == "acknowledge_missed"]
        assert missed == ["2026-03-03T18:00:00+08:00", "2026-03-04T18:00:00+08:00"]
        set_clock(client, "2026-03-09T18:00:00+08:00")
        detail = _detail(client, saturday)
        assert _actions(detail).count("acknowledge_missed") == 1
        assert detail["escalation_level"] == 0, "reminded and escalated at the same moment"
        assert _timer(detail, "acknowledge_due")["due_at"] == "2026-03-10T18:00:00+08:00"
        set_clock(client, "2026-03-10T18:00:00+08:00")
        assert _detail(client, saturday)["escalation_level"] == 1


def test_13710_first_feedback_reminder_after_3_working_days(db_url):
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        bid = _assign(client, _blocker(client)["id"])["id"]
        set_clock(client, "2026-03-02T10:00:00+08:00")
        unit_key = create_key(client, "wy")
        ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=unit_key))
        # Acknowledged Monday: feedback due by the end of Thursday 2026-03-05.
        assert _timer(_detail(client, bid), "feedback_due")["due_at"] == (
            "2026-03-05T23:59:59+08:00"
        )
        set_clock(client, "2026-03-05T23:59:00+08:00")
        assert "feedback_missed" not in _actions(_detail(client, bid))
        set_clock(client, "2026-03-06T08:00:00+08:00")
        detail = _detail(client, bid)
        (missed,) = [e for e in detail["timeline"] if e["action"] == "feedback_missed"]
        assert missed["at"] == "2026-03-05T23:59:59+08:00"
        # Then every 3 working days: Tuesday 2026-03-10.
        assert _timer(detail, "feedback_due")["due_at"] == "2026-03-10T23:59:59+08:00"
        # Reporting progress restarts the count from today.
        ok(
            client.post(
                f"/api/v1/blockers/{bid}/feedback", json={"note": "材料已补"}, headers=unit_key
            )
        )
        assert _timer(_detail(client, bid), "feedback_due")["due_at"] == (
            "2026-03-11T23:59:59+08:00"
        )


def test_the_default_workflow_run_the_same_way_differs(db_url):
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        b = _blocker(client, workflow=None)
        assert b["workflow"] == "blocker"
        # No default deadline: assign without one is refused and changes nothing.
        refused = client.post(
            f"/api/v1/blockers/{b['id']}/assign", json={"unit": "wy"}, headers=ADMIN
        )
        assert refused.status_code == 422 and "deadline" in refused.json()["detail"]
        refused = client.post(
            f"/api/v1/blockers/{b['id']}/assign",
            json={"unit": "wy", "complexity": "complex"},
            headers=ADMIN,
        )
        assert refused.status_code == 422
        assert _detail(client, b["id"])["state"] == "collected"
        b = _assign(client, b["id"], deadline={"working_days": 7})
        assert b["deadline"] == "2026-03-11" and b["workflow"] == "blocker"
        # Acknowledge within 1 working day (end of Tuesday), not by 18:00 the same day.
        assert _timer(_detail(client, b["id"]), "acknowledge_due")["due_at"] == (
            "2026-03-03T23:59:59+08:00"
        )
        set_clock(client, "2026-03-02T18:00:00+08:00")
        assert "acknowledge_missed" not in _actions(_detail(client, b["id"]))
        set_clock(client, "2026-03-02T19:00:00+08:00")
        ok(
            client.post(
                f"/api/v1/blockers/{b['id']}/acknowledge", json={}, headers=create_key(client, "wy")
            )
        )
        # Feedback every 5 working days, not 3.
        assert _timer(_detail(client, b["id"]), "feedback_due")["due_at"] == (
            "2026-03-09T23:59:59+08:00"
        )
        set_clock(client, "2026-03-06T08:00:00+08:00")
        assert "feedback_missed" not in _actions(_detail(client, b["id"]))
