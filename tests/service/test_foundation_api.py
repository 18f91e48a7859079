"""The first API: units, officers, projects, blockers, API keys, health — on both databases."""

from __future__ import annotations

from sqlmodel import select

from service import migrations
from service.models import Unit
from tests.helpers import (
    ADMIN,
    city,
    create_blocker,
    create_key,
    create_project,
    create_unit,
    make_client,
    ok,
)


def test_units_officers_projects_blockers_round_trip(db_url):
    with make_client(db_url) as client:
        city(client)
        unit = ok(client.get("/api/v1/units/wy", headers=ADMIN))
        assert unit["parent"] == "xx" and unit["level"] == "county"
        codes = [u["code"] for u in ok(client.get("/api/v1/units?limit=3", headers=ADMIN))["items"]]
        assert codes == ["xx", "xx-zb", "xx-cwfsz"]
        page = ok(client.get("/api/v1/units?limit=3", headers=ADMIN))
        rest = ok(client.get(f"/api/v1/units?limit=50&cursor={page['next_cursor']}", headers=ADMIN))
        assert [u["code"] for u in rest["items"]][0] == "xx-fsz-land" and rest[
            "next_cursor"
        ] is None
        project = create_project(client, "P1", "wy", total_investment=12000.5)
        assert project["county"] == "wy" and project["light"] == "green"
        blocker = create_blocker(client, "P1", description="林地手续未办结")
        assert blocker["state"] == "collected" and blocker["version"] == 1
        assert blocker["project"] == "P1" and blocker["overdue"] is False
        detail = client.get(f"/api/v1/blockers/{blocker['id']}", headers=ADMIN)
        assert detail.headers["etag"] == '"1"'
        body = ok(detail)
        assert [e["action"] for e in body["timeline"]] == ["create"] and body["timers"] == []
        assert (
            ok(client.get("/api/v1/projects/P1", headers=ADMIN))["blockers"][0]["id"]
            == blocker["id"]
        )


def test_bad_input_names_the_field_and_writes_nothing(db_url):
    with make_client(db_url) as client:
        create_unit(client, "xx", level="city")
        cases = [
            (
                {
                    "code": "a",
                    "name": "a",
                    "level": "county",
                    "kind": "government",
                    "parent": "nope",
                },
                422,
                "parent",
            ),
            (
                {
                    "code": "xx",
                    "name": "dup",
                    "level": "city",
                    "kind": "government",
                    "parent": None,
                },
                409,
                "code",
            ),
            ({"code": "b", "level": "county", "kind": "government"}, 422, "name"),
            ({"code": "c", "name": "c", "level": 5, "kind": "government"}, 422, "level"),
            (
                {"code": "d", "name": "d", "level": "county", "kind": "government", "state": "x"},
                422,
                "state",
            ),
        ]
        for body, status, field in cases:
            response = client.post("/api/v1/units", json=body, headers=ADMIN)
            assert response.status_code == status, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            assert field in response.json()["detail"]
        malformed = client.post(
            "/api/v1/units", content=b"{nope", headers={**ADMIN, "content-type": "application/json"}
        )
        assert malformed.status_code == 400
        with client.app.state.db.unit_of_work(readonly=True) as session:
            assert [u.code for u in session.exec(select(Unit))] == ["xx"]


def test_auth_keys_are_hashed_shown_once_and_scoped(db_url):
    with make_client(db_url) as client:
        city(client)
        assert client.get("/api/v1/units").status_code == 401
        assert (
            client.get("/api/v1/units", headers={"Authorization": "Bearer wrong"}).status_code
            == 401
        )
        reader = create_key(client, "wy", scopes=["read"])
        writer = create_key(client, "wy")
        secret = reader["Authorization"].split()[1]
        with client.app.state.db.unit_of_work(readonly=True) as session:
            from service.models import ApiKey

            stored = [k.key_hash for k in session.exec(select(ApiKey))]
        assert secret not in stored and all(len(h) == 64 for h in stored)
        # A county key sees its own subtree only; other counties are 404, not 403.
        assert ok(client.get("/api/v1/units/wy-zrzy", headers=reader))["code"] == "wy-zrzy"
        assert client.get("/api/v1/units/hj", headers=reader).status_code == 404
        create_project(client, "P1", "wy", headers=writer)
        assert (
            client.post(
                "/api/v1/projects",
                json={"code": "P2", "name": "n", "category": "c", "county": "wy"},
                headers=reader,
            ).status_code
            == 403
        )
        assert (
            client.post(
                "/api/v1/projects",
                json={"code": "P3", "name": "n", "category": "c", "county": "hj"},
                headers=writer,
            ).status_code
            == 403
        )
        assert (
            client.post(
                "/api/v1/units",
                json={"code": "z", "name": "z", "level": "county", "kind": "government"},
                headers=writer,
            ).status_code
            == 403
        )


def test_health_ready_metrics(db_url):
    with make_client(db_url) as client:
        assert ok(client.get("/healthz")) == {"status": "ok"}
        ready = ok(client.get("/readyz"))
        assert ready["revision"] == migrations.head_revision(db_url) and ready["revision"] >= "0005"
        client.get("/api/v1/units", headers=ADMIN)
        text = client.get("/metrics").text
        assert 'duban_http_requests_total{method="GET",route="/api/v1/units",status="200"}' in text
        assert "duban_http_request_duration_seconds_bucket" in text


def test_readyz_fails_when_not_migrated(tmp_path):
    with make_client(f"sqlite:///{tmp_path}/empty.db") as client:
        response = client.get("/readyz")
        assert response.status_code == 503 and "duban db upgrade" in response.json()["detail"]


def test_metrics_are_served_when_the_database_is_down(sqlite_url):
    """An outage is when the counters are needed: /metrics still answers, says the
    database is down, and keeps the process's own figures; /readyz says not ready."""
    with make_client(sqlite_url) as client:
        ok(client.get("/api/v1/units", headers=ADMIN))
        up = client.get("/metrics")
        assert up.status_code == 200 and "duban_database_up 1" in up.text
        assert 'duban_notifications{status="dead"} 0' in up.text
        path = sqlite_url.removeprefix("sqlite:///")
        with open(path, "wb") as broken:  # the disk answers garbage from now on
            broken.write(b"not a database at all " * 200)
        client.app.state.db.dispose()
        down = client.get("/metrics")
        assert down.status_code == 200, down.text
        assert "duban_database_up 0" in down.text and "duban_notifications" not in down.text
        assert 'duban_http_requests_total{method="GET",route="/api/v1/units",status="200"} 1.0' in down.text
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200
