"""Rotating an API key: a new secret for the same key, so the system keeps its tickets."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from service.models import ApiKey
from service.models.types import utcnow
from tests.helpers import ADMIN, city, create_project, create_unit, make_client, ok


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_a_rotated_key_keeps_its_tickets_and_the_old_secret_works_for_the_overlap(db_url):
    with make_client(db_url) as client:  # Monday 2 March 2026
        city(client)
        create_unit(client, "xx-zrj", "市自然资源和规划局", level="city", kind="department", parent="xx")
        create_project(client, "P1", "wy")
        made = ok(client.post("/api/v1/api-keys", json={"name": "县12345平台", "unit": "wy",
                                                        "scopes": ["read", "write"]}, headers=ADMIN), 201)
        old = bearer(made["key"])
        hook = ok(client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/wy", "secret": "s",
                                                         "events": ["*"]}, headers=old), 201)
        ticket = {"project": "P1", "title": "供电线路迁改", "category": "涉电", "external_ref": "12345-0007"}
        bid = ok(client.post("/api/v1/blockers", json=ticket, headers=old), 201)["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "xx-zrj", "deadline": {"working_days": 5}},
                       headers=ADMIN))

        rotated = ok(client.post(f"/api/v1/api-keys/{made['id']}/rotate", json={"overlap_s": 3600}, headers=ADMIN))
        new = bearer(rotated["key"])
        assert rotated["id"] == made["id"] and rotated["key"] != made["key"]
        assert rotated["prefix"] == rotated["key"][:10] != made["prefix"]
        assert (rotated["unit"], rotated["scopes"]) == ("wy", ["read", "write"])
        assert rotated["previous_until"]
        listed = next(k for k in ok(client.get("/api/v1/api-keys", headers=ADMIN))["items"] if k["id"] == made["id"])
        assert listed["prefix"] == rotated["prefix"] and listed["previous_until"] == rotated["previous_until"]
        # Both secrets work during the overlap, and both are the same key.
        for headers in (old, new):
            ok(client.get(f"/api/v1/blockers/{bid}", headers=headers))
        # The new secret is still the reporter: its external_ref finds the ticket, no twin,
        # it may withdraw the ticket it reported, and its subscription is its own.
        again = client.post("/api/v1/blockers", json=ticket, headers=new)
        assert again.status_code == 200 and again.json()["id"] == bid
        assert [b["id"] for b in ok(client.get("/api/v1/blockers?external_ref=12345-0007", headers=new))["items"]] == [bid]
        assert [w["id"] for w in ok(client.get("/api/v1/webhooks", headers=new))["items"]] == [hook["id"]]
        assert "withdraw" in ok(client.get(f"/api/v1/blockers/{bid}", headers=new))["allowed_actions"]

        # The overlap ends (real time, here moved in the database): the old secret is
        # refused, the new one works.
        with client.app.state.db.unit_of_work() as session:
            session.execute(update(ApiKey).values(previous_until=utcnow() - timedelta(seconds=1)))
        client.app.state.principals.forget_all()  # as DUBAN_AUTH_CACHE_S passing would
        assert client.get(f"/api/v1/blockers/{bid}", headers=old).status_code == 401
        ok(client.post(f"/api/v1/blockers/{bid}/withdraw", json={"reason": "企业已自行解决"}, headers=new))


def test_rotation_without_overlap_ends_the_old_secret_at_once_and_refuses_what_it_should(db_url):
    with make_client(db_url) as client:
        city(client)
        made = ok(client.post("/api/v1/api-keys", json={"name": "OA", "unit": "wy", "scopes": ["read"]},
                              headers=ADMIN), 201)
        ok(client.get("/api/v1/blockers", headers=bearer(made["key"])))  # cached by this process
        first = ok(client.post(f"/api/v1/api-keys/{made['id']}/rotate", headers=ADMIN))
        assert first["previous_until"] is None
        assert client.get("/api/v1/blockers", headers=bearer(made["key"])).status_code == 401
        ok(client.get("/api/v1/blockers", headers=bearer(first["key"])))
        # Rotating again with an overlap keeps the last secret only, never an older one.
        second = ok(client.post(f"/api/v1/api-keys/{made['id']}/rotate", json={"overlap_s": 60}, headers=ADMIN))
        ok(client.get("/api/v1/blockers", headers=bearer(first["key"])))
        third = ok(client.post(f"/api/v1/api-keys/{made['id']}/rotate", json={"overlap_s": 60}, headers=ADMIN))
        assert client.get("/api/v1/blockers", headers=bearer(first["key"])).status_code == 401
        for secret in (second["key"], third["key"]):
            ok(client.get("/api/v1/blockers", headers=bearer(secret)))

        # Refused, and nothing changes: a week at most, admin scope only, no revoked key.
        for body in ({"overlap_s": 7 * 86_400 + 1}, {"overlap_s": -1}, {"overlap_s": "60"}):
            answer = client.post(f"/api/v1/api-keys/{made['id']}/rotate", json=body, headers=ADMIN)
            assert answer.status_code == 422, answer.text
            assert answer.headers["content-type"].startswith("application/problem+json")
        assert client.post(f"/api/v1/api-keys/{made['id']}/rotate", headers=bearer(third["key"])).status_code == 403
        assert client.post("/api/v1/api-keys/999/rotate", headers=ADMIN).status_code == 404
        ok(client.post(f"/api/v1/api-keys/{made['id']}/revoke", headers=ADMIN))
        answer = client.post(f"/api/v1/api-keys/{made['id']}/rotate", headers=ADMIN)
        assert answer.status_code == 409 and "revoked" in answer.json()["detail"]
        for secret in (second["key"], third["key"]):  # the overlap ends with the revocation
            assert client.get("/api/v1/blockers", headers=bearer(secret)).status_code == 401
        listed = ok(client.get("/api/v1/api-keys", headers=ADMIN))["items"]
        assert next(k for k in listed if k["id"] == made["id"])["previous_until"] is None
