"""Officers change: a new mobile, a new role, or they leave the post and are no longer @-ed."""

from __future__ import annotations

from tests.helpers import (
    ADMIN,
    advance,
    city,
    create_blocker,
    create_key,
    create_officer,
    create_project,
    make_client,
    ok,
)
from tests.service.test_end_to_end_notifications import add_group

ASSIGN = {"unit": "wy", "deadline": {"working_days": 5}}


def test_an_officer_is_corrected_then_leaves_and_is_no_longer_at_ed_or_assigned(db_url):
    with make_client(db_url) as client:  # Monday 2 March 2026; 李四 13900000002 leads wy
        city(client)
        add_group(client, "wy")
        create_project(client, "P1", "wy")
        wang = create_officer(client, "wy", "王五", "13700000005", "liaison")
        assert wang["active"] is True

        fixed = ok(client.patch(f"/api/v1/officers/{wang['id']}", json={"mobile": "13700000006", "wecom_userid": "wangwu"},
                                headers=ADMIN))
        assert (fixed["mobile"], fixed["wecom_userid"], fixed["name"], fixed["role"]) == ("13700000006", "wangwu", "王五", "liaison")
        assert ok(client.get(f"/api/v1/officers/{wang['id']}", headers=ADMIN)) == fixed
        cleared = ok(client.patch(f"/api/v1/officers/{wang['id']}", json={"wecom_userid": None}, headers=ADMIN))
        assert cleared["wecom_userid"] is None and cleared["mobile"] == "13700000006"

        first = create_blocker(client, "P1")["id"]
        ok(client.post(f"/api/v1/blockers/{first}/assign", json={**ASSIGN, "officer_id": wang["id"]}, headers=ADMIN))

        def mentions(bid: int) -> list[list[str]]:
            rows = ok(client.get("/api/v1/notifications", params={"blocker": bid}, headers=ADMIN))["items"]
            return [r["mentions"] for r in rows if r["channel_kind"] == "wecom"]

        assert mentions(first) == [["13700000006"]]

        own_key = create_key(client, "wy", officer_id=wang["id"])
        ok(client.get("/api/v1/blockers", headers=own_key))
        gone = ok(client.patch(f"/api/v1/officers/{wang['id']}", json={"active": False}, headers=ADMIN))
        assert gone["active"] is False
        assert client.get("/api/v1/blockers", headers=own_key).status_code == 401  # their key goes too
        # No new assignment, key or project for someone who left; nothing changes.
        second = create_blocker(client, "P1")
        refused = client.post(f"/api/v1/blockers/{second['id']}/assign", json={**ASSIGN, "officer_id": wang["id"]},
                              headers=ADMIN)
        assert refused.status_code == 422 and "left the post" in refused.json()["detail"], refused.text
        assert ok(client.get(f"/api/v1/blockers/{second['id']}", headers=ADMIN))["version"] == second["version"]
        for path, body in (("/api/v1/api-keys", {"name": "k", "unit": "wy", "scopes": ["read"], "officer_id": wang["id"]}),
                           ("/api/v1/projects", {"code": "P2", "name": "项目", "category": "省市重点", "county": "wy",
                                                 "leader_officer_id": wang["id"]})):
            answer = client.post(path, json=body, headers=ADMIN)
            assert answer.status_code == 422 and "left the post" in answer.text, answer.text
        # The blocker still assigned to them: its reminders @ the unit's lead instead.
        advance(client, "P2D")  # the acknowledgement reminder is due after one working day
        assert mentions(first)[-1] == ["13900000002"] and len(mentions(first)) > 1

        back = ok(client.patch(f"/api/v1/officers/{wang['id']}", json={"active": True}, headers=ADMIN))
        assert back["active"] is True
        ok(client.post(f"/api/v1/blockers/{second['id']}/assign", json={**ASSIGN, "officer_id": wang["id"]},
                       headers=ADMIN))
        assert mentions(second["id"]) == [["13700000006"]]


def test_a_wrong_change_to_an_officer_is_refused_and_changes_nothing(db_url):
    with make_client(db_url) as client:
        city(client)
        wang = create_officer(client, "wy", "王五", "13700000005", "liaison")
        path = f"/api/v1/officers/{wang['id']}"
        for body in ({}, {"mobile": "call me"}, {"role": "boss"}, {"active": "no"}, {"name": None}, {"active": None},
                     {"mobile": None}, {"name": ""}, {"unit": "hj"}, {"id": 99}, {"created_at": "2026-01-01"}):
            answer = client.patch(path, json=body, headers=ADMIN)
            assert answer.status_code == 422, (body, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
        assert ok(client.get(path, headers=ADMIN)) == wang
        assert client.patch("/api/v1/officers/999999", json={"name": "x"}, headers=ADMIN).status_code == 404
        assert client.patch(path, json={"name": "x"}, headers=create_key(client, "wy")).status_code == 403
        assert client.patch(path, json={"name": "x"}).status_code == 401
        assert ok(client.get(path, headers=ADMIN)) == wang
