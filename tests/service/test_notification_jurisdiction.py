"""Which outbox rows a unit's key sees in GET /notifications and may retry."""

from __future__ import annotations

from sqlmodel import select

from service.models import Notification
from tests.helpers import (
    ADMIN,
    advance,
    city,
    create_blocker,
    create_key,
    create_project,
    create_unit,
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
        # The city taskforce oversees the county's groups, not the deliveries to another
        # system's subscription (the county's, the admin's): those are their key's alone.
        city_seen = {n["id"] for n in ok(client.get("/api/v1/notifications?limit=500",
                                                    headers=create_key(client, "xx-zb")))["items"]}
        county_hook = {n["id"] for n in seen if n["channel_kind"] == "webhook"}
        assert county_hook and not (province | county_hook) & city_seen
        assert {n["id"] for n in seen} - county_hook <= city_seen
        other_wy_key = {n["id"] for n in ok(client.get("/api/v1/notifications?limit=500",
                                                       headers=create_key(client, "wy")))["items"]}
        assert not county_hook & other_wy_key
        own_digest = next(n["id"] for n in seen if n["kind"] == "daily_digest")
        assert client.post(f"/api/v1/notifications/{own_digest}/retry", headers=wy_key).status_code == 202


def test_a_subscription_follows_what_its_key_sees_and_belongs_to_that_key(db_url):
    """A deputy mayor's office gets the blockers escalated to it; a county's system gets the
    blockers it reported even once they are assigned to a city department; another system
    of the same unit (another key) neither lists nor removes its subscription."""
    with make_client(db_url) as client:  # Monday 2 March 2026
        city(client)
        create_unit(client, "xx-zrj", "市自然资源和规划局", level="city", kind="department", parent="xx")
        create_project(client, "P1", "wy")
        keys = {unit: create_key(client, unit) for unit in ("xx-fsz-land", "wy")}
        subs = {
            unit: ok(client.post("/api/v1/webhooks", json={"url": f"http://127.0.0.1:9/{unit}", "secret": "s",
                                                           "events": ["*"]}, headers=key), 201)
            for unit, key in keys.items()
        }
        reported = create_blocker(client, "P1", headers=keys["wy"], category="用地")["id"]
        ok(client.post(f"/api/v1/blockers/{reported}/assign",
                       json={"unit": "xx-zrj", "deadline": {"working_days": 5}}, headers=ADMIN))
        for _ in range(2):  # 综合专班, then the deputy mayor in charge of land (用地)
            ok(client.post(f"/api/v1/blockers/{reported}/request_escalation", json={"reason": "需协调"},
                           headers=ADMIN))

        def events_to(unit: str) -> list[str]:
            rows = ok(client.get("/api/v1/notifications", params={"blocker": reported, "limit": 500},
                                 headers=ADMIN))["items"]
            return [r["event_type"] for r in rows if r["channel"] == subs[unit]["channel_id"]]

        assert "blocker.assigned" in events_to("wy")  # its own report, now a department's
        assert events_to("xx-fsz-land").count("blocker.escalated") == 1  # escalated to it
        # Another key of wy: its own subscriptions only.
        other = create_key(client, "wy")
        assert ok(client.get("/api/v1/webhooks", headers=other))["items"] == []
        assert client.delete(f"/api/v1/webhooks/{subs['wy']['id']}", headers=other).status_code == 404
        assert [w["id"] for w in ok(client.get("/api/v1/webhooks", headers=keys["wy"]))["items"]] == [subs["wy"]["id"]]
        # The admin's subscription (no key, filed under the root unit) is not the root unit's.
        admins = ok(client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/all", "secret": "s",
                                                          "events": ["*"]}, headers=ADMIN), 201)
        root = create_key(client, "xx")
        assert ok(client.get("/api/v1/webhooks", headers=root))["items"] == []
        assert client.delete(f"/api/v1/webhooks/{admins['id']}", headers=root).status_code == 404


def test_a_revoked_keys_subscription_receives_nothing_more(db_url):
    """Revoking a key (a system retired, a leaked secret) also ends what its subscriptions
    receive: the blocker events after the revocation go to the other subscribers only."""
    with make_client(db_url) as client:  # Monday 2 March 2026
        city(client)
        create_project(client, "P1", "wy")
        made = ok(client.post("/api/v1/api-keys", json={"name": "县OA", "unit": "wy", "scopes": ["read", "write"]},
                              headers=ADMIN), 201)
        county = {"Authorization": f"Bearer {made['key']}"}
        hooks = {
            name: ok(client.post("/api/v1/webhooks", json={"url": f"http://127.0.0.1:9/{name}", "secret": "s",
                                                           "events": ["*"]}, headers=headers), 201)
            for name, headers in (("county", county), ("admin", ADMIN))
        }
        bid = create_blocker(client, "P1", headers=county)["id"]

        def deliveries(name: str) -> list[str]:
            rows = ok(client.get("/api/v1/notifications", params={"blocker": bid, "limit": 500},
                                 headers=ADMIN))["items"]
            return [r["event_type"] for r in rows if r["channel"] == hooks[name]["channel_id"]]

        assert deliveries("county") == deliveries("admin") == ["blocker.created"]
        ok(client.post(f"/api/v1/api-keys/{made['id']}/revoke", headers=ADMIN))
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 1}},
                       headers=ADMIN))
        advance(client, "P3D")  # the acknowledgement reminder and escalation, through the sweep
        assert "blocker.escalated" in deliveries("admin")
        assert deliveries("county") == ["blocker.created"]


def test_working_the_escalation_queue_is_delivered_to_subscribers(db_url):
    """The queue's acknowledge and handle are timeline events too, so `*` receives them, as
    does a subscription naming them (or their action names)."""
    with make_client(db_url) as client:  # Monday 2 March 2026
        city(client)
        create_project(client, "P1", "wy")
        hooks = {
            name: ok(client.post("/api/v1/webhooks", json={"url": f"http://127.0.0.1:9/{name}", "secret": "s",
                                                           "events": events}, headers=ADMIN), 201)
            for name, events in (("all", ["*"]), ("handled", ["blocker.escalation_handle"]))
        }
        bid = create_blocker(client, "P1")["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 5}},
                       headers=ADMIN))
        ok(client.post(f"/api/v1/blockers/{bid}/request_escalation", json={"reason": "需协调"}, headers=ADMIN))
        (entry,) = ok(client.get("/api/v1/escalations", headers=ADMIN))["items"]
        taskforce = create_key(client, "xx-zb")
        for action in ("acknowledge", "handle"):
            ok(client.post(f"/api/v1/escalations/{entry['id']}/{action}", json={"note": "已协调"}, headers=taskforce))

        def delivered(name: str) -> list[str]:
            rows = ok(client.get("/api/v1/notifications", params={"blocker": bid, "limit": 500},
                                 headers=ADMIN))["items"]
            return [r["event_type"] for r in rows if r["channel"] == hooks[name]["channel_id"]]

        assert delivered("all")[-2:] == ["blocker.escalation_acknowledged", "blocker.escalation_handled"]
        assert delivered("handled") == ["blocker.escalation_handled"]
        timeline = ok(client.get(f"/api/v1/blockers/{bid}", headers=ADMIN))["timeline"]
        assert [e["action"] for e in timeline[-2:]] == ["escalation_acknowledge", "escalation_handle"]
        with client.app.state.db.unit_of_work(readonly=True) as session:
            body = session.exec(select(Notification).where(Notification.channel_id == hooks["handled"]["channel_id"])
                                ).one().context
        assert (body["event"]["id"], body["event"]["hash"], body["version"]) == (
            timeline[-1]["id"], timeline[-1]["hash"], len(timeline))
