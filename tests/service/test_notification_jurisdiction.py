"""Which outbox rows a unit's key sees in GET /notifications and may retry."""

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
from tests.service.test_end_to_end_notifications import add_group


def test_a_unit_key_sees_its_groups_and_its_blockers_but_not_another_partys_subscription(db_url):
    with make_client(db_url) as client:  # Monday 2 March 2026, 09:30
        city(client)
        add_group(client, "wy")
        wy_key = create_key(client, "wy")
        hook = {"secret": "s3cret-for-the-province", "events": ["*"]}
        ok(client.post("/api/v1/webhooks", json={**hook, "url": "http://127.0.0.1:9/province"}, headers=ADMIN), 201)
        ok(client.post("/api/v1/webhooks", json={**hook, "url": "http://127.0.0.1:9/county-oa"}, headers=wy_key), 201)
        create_project(client, "P1", "wy")
        bid = create_blocker(client, "P1")["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 2}},
                       headers=ADMIN))
        advance(client, "P1D")  # Tuesday 09:30: wy's daily digest (about no one blocker)

        every = ok(client.get("/api/v1/notifications?limit=500", headers=ADMIN))["items"]
        seen = ok(client.get("/api/v1/notifications?limit=500", headers=wy_key))["items"]
        province = {n["id"] for n in every if n["channel_kind"] == "webhook" and n["channel"] not in
                    {s["channel"] for s in seen}}
        assert province  # the admin's subscription got the blocker's events
        assert {n["kind"] for n in seen} >= {"assigned", "daily_digest", "webhook"}
        assert not province & {n["id"] for n in seen}
        assert {n["id"] for n in every} - province == {n["id"] for n in seen}
        stranger = next(iter(province))
        assert client.post(f"/api/v1/notifications/{stranger}/retry", headers=wy_key).status_code == 403
        # The city taskforce oversees the county's subscription, not the admin's.
        city_seen = {n["id"] for n in ok(client.get("/api/v1/notifications?limit=500",
                                                    headers=create_key(client, "xx-zb")))["items"]}
        assert not province & city_seen and {n["id"] for n in seen} <= city_seen
        own_digest = next(n["id"] for n in seen if n["kind"] == "daily_digest")
        assert client.post(f"/api/v1/notifications/{own_digest}/retry", headers=wy_key).status_code == 202
