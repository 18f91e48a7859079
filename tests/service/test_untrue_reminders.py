"""A reminder held for office hours is dropped when the blocker moves on before it goes out:
nobody is told on Monday to report progress on a blocker withdrawn on Saturday."""

from __future__ import annotations

from tests.helpers import (
    ADMIN,
    city,
    create_blocker,
    create_key,
    create_project,
    make_client,
    ok,
    set_clock,
)
from tests.service.test_end_to_end_notifications import add_group, deliver


def kinds(client, bid: int, status: str | None = None) -> list[str]:
    params = {"blocker": bid, "limit": 500, **({"status": status} if status else {})}
    return [n["kind"] for n in ok(client.get("/api/v1/notifications", params=params, headers=ADMIN))["items"]]


def test_a_held_feedback_reminder_is_dropped_when_the_blocker_is_withdrawn(db_url):
    with make_client(db_url, clock_start="2026-10-30T10:00:00+08:00") as client:  # a Friday
        city(client)
        add_group(client, "wy")
        create_project(client, "P1", "wy")
        wy = create_key(client, "wy")
        bid = create_blocker(client, "P1")["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 20}},
                       headers=ADMIN))
        ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=wy))
        other = create_blocker(client, "P1")["id"]  # the same, left alone: its reminder stays
        ok(client.post(f"/api/v1/blockers/{other}/assign", json={"unit": "wy", "deadline": {"working_days": 20}},
                       headers=ADMIN))
        ok(client.post(f"/api/v1/blockers/{other}/acknowledge", json={}, headers=wy))
        set_clock(client, "2026-11-07T01:00:00+08:00")  # feedback was due Friday 6th; it is Saturday
        assert "feedback_reminder" in kinds(client, bid, "pending")  # held until Monday 08:30

        ok(client.post(f"/api/v1/blockers/{bid}/withdraw", json={"reason": "重复上报"}, headers=ADMIN))
        assert "feedback_reminder" not in kinds(client, bid)
        set_clock(client, "2026-11-09T10:00:00+08:00")
        deliver(client, 2)
        assert "feedback_reminder" not in kinds(client, bid)
        assert "feedback_reminder" in kinds(client, other)


def test_a_held_acknowledgement_reminder_is_dropped_once_the_unit_signs_for_it(db_url):
    with make_client(db_url, clock_start="2026-11-06T10:00:00+08:00") as client:  # a Friday
        city(client)
        add_group(client, "wy")
        machine = ok(client.post("/api/v1/channels", json={"unit": "wy", "kind": "webhook", "secret": "s",
                                                           "url": "http://127.0.0.1:9/wy-oa"}, headers=ADMIN), 201)
        create_project(client, "P1", "wy")
        bid = create_blocker(client, "P1")["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 20}},
                       headers=ADMIN))
        set_clock(client, "2026-11-10T08:00:00+08:00")  # Tuesday 08:00: sign-for was due Monday
        assert kinds(client, bid, "pending").count("acknowledge_reminder") == 2  # the group, the OA
        ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=create_key(client, "wy")))
        rows = ok(client.get("/api/v1/notifications", params={"blocker": bid, "limit": 500}, headers=ADMIN))["items"]
        # The group is not told to sign for it; the unit's system still learns the timer fired.
        assert [r["channel"] for r in rows if r["kind"] == "acknowledge_reminder"] == [machine["id"]]
        assert "assigned" in kinds(client, bid)  # what was said before stays
