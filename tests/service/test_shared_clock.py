"""Several replicas with the simulation clock share one time: the one told to move it stores
it, the others follow before they answer, stamp the timeline, or move it again."""

from __future__ import annotations

from tests.helpers import ADMIN, city, create_blocker, create_project, make_client, ok


def test_replicas_follow_the_time_the_last_move_stored(db_url):
    with make_client(db_url) as one, make_client(db_url, clock_start=None) as two:  # Monday 2 March, 09:30
        city(one)
        create_project(one, "P1", "wy")
        bid = create_blocker(one, "P1")["id"]
        ok(one.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 5}},
                    headers=ADMIN))
        assert ok(one.post("/api/v1/admin/clock", json={"advance": "P2D"}, headers=ADMIN))["now"].startswith(
            "2026-03-04T09:30")
        assert ok(two.get("/api/v1/admin/clock", headers=ADMIN))["now"].startswith("2026-03-04T09:30")
        # The other replica stamps what it does at the shared time, not at its own start.
        acted = ok(two.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
        timeline = ok(two.get(f"/api/v1/blockers/{bid}", headers=ADMIN))["timeline"]
        assert acted["version"] == timeline[-1]["seq"] and timeline[-1]["at"].startswith("2026-03-04T09:30")
        assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)
        # Told to move, it moves from the shared time; the first follows it back.
        assert ok(two.post("/api/v1/admin/clock", json={"advance": "PT1H"}, headers=ADMIN))["now"].startswith(
            "2026-03-04T10:30")
        assert ok(one.get("/api/v1/admin/clock", headers=ADMIN))["now"].startswith("2026-03-04T10:30")
    with make_client(db_url, clock_start=None) as again:  # a restart resumes the shared time
        assert ok(again.get("/api/v1/admin/clock", headers=ADMIN))["now"].startswith("2026-03-04T10:30")
