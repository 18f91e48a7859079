"""Reports, request limits and the escalation queue's jurisdiction."""

from __future__ import annotations

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
        rows = ok(client.get("/api/v1/reports/units?from=2026-03-01&to=2026-03-31", headers=ADMIN))
        wy = next(r for r in rows if r["unit"] == "wy")
        assert wy["assigned"] == 3 and wy["resolved"] == 1 and wy["resolved_on_time"] == 1
        assert wy["overdue"] == 2 and wy["satisfaction_rate"] == 1.0 and wy["rank"] == 1
        projects = ok(client.get("/api/v1/reports/projects", headers=ADMIN))
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
