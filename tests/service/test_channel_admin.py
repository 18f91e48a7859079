"""A broken channel can be fixed or switched off over the API, and one group is bound once."""

from __future__ import annotations

from tests.helpers import ADMIN, city, create_blocker, create_key, create_project, make_client, ok
from tests.notifiers.fakes import WeComRobot
from tests.service.test_end_to_end_notifications import deliver


def test_a_channel_with_a_wrong_key_is_fixed_and_its_dead_rows_retried(db_url):
    with WeComRobot({"right-key"}) as wecom, make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        body = {"unit": "wy", "kind": "wecom", "url": wecom.url("wrong-key")}
        channel = ok(client.post("/api/v1/channels", json=body, headers=ADMIN), 201)
        # The same group bound twice would get every message twice.
        again = client.post("/api/v1/channels", json=body, headers=ADMIN)
        assert again.status_code == 409 and f"PATCH /api/v1/channels/{channel['id']}" in again.text
        bid = create_blocker(client, "P1")["id"]
        assign = {"unit": "wy", "deadline": {"working_days": 5}}
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json=assign, headers=ADMIN))
        deliver(client, 2)
        (dead,) = ok(client.get("/api/v1/notifications", params={"status": "dead"}, headers=ADMIN))["items"]
        assert "93000" in dead["last_error"]
        # An operator's dashboard sees it too.
        metrics = client.get("/metrics").text
        assert 'duban_notifications{status="dead"} 1' in metrics
        assert "duban_timers_late 0" in metrics

        # Bad values change nothing.
        for wrong in ({}, {"url": "smtp://127.0.0.1/a@b.cn"}, {"url": "http://10.0.0.1/x"}, {"enabled": None}, {"enabled": "yes"}):
            r = client.patch(f"/api/v1/channels/{channel['id']}", json=wrong, headers=ADMIN)
            assert r.status_code == 422, (wrong, r.text)
        assert client.patch("/api/v1/channels/999999", json={"enabled": False}, headers=ADMIN).status_code == 404

        fixed = ok(client.patch(f"/api/v1/channels/{channel['id']}", json={"url": wecom.url("right-key")}, headers=ADMIN))
        assert fixed["url"] == wecom.url("right-key") and fixed["enabled"] is True
        retried = ok(client.post(f"/api/v1/notifications/{dead['id']}/retry", headers=ADMIN), 202)
        # The answer is the row as it stands: due again at once, its history kept.
        assert (retried["id"], retried["status"], retried["attempts"]) == (dead["id"], "failed", 1)
        deliver(client, 2)
        row = ok(client.get("/api/v1/notifications", params={"blocker": bid}, headers=ADMIN))["items"][0]
        assert row["status"] == "sent"
        assert len(wecom.messages) == 1

        # Switched off, the channel gets nothing more; switched on, it does again.
        ok(client.patch(f"/api/v1/channels/{channel['id']}", json={"enabled": False}, headers=ADMIN))
        ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
        other = create_blocker(client, "P1")["id"]
        ok(client.post(f"/api/v1/blockers/{other}/assign", json=assign, headers=ADMIN))
        deliver(client, 2)
        assert len(wecom.messages) == 1
        listed = ok(client.get("/api/v1/channels", params={"unit": "wy"}, headers=ADMIN))["items"]
        assert [c["enabled"] for c in listed] == [False]


def test_a_units_key_sees_its_channels_without_the_robot_tokens(sqlite_url):
    with make_client(sqlite_url) as client:
        city(client)
        robots = {
            "wecom": "http://127.0.0.1:9/cgi-bin/webhook/send?key=secret-wecom-key",
            "dingtalk": "http://127.0.0.1:9/robot/send?access_token=secret-ding-token",
            "feishu": "http://127.0.0.1:9/open-apis/bot/v2/hook/secret-feishu-hook",
        }
        for kind, url in robots.items():
            ok(client.post("/api/v1/channels", json={"unit": "wy", "kind": kind, "url": url}, headers=ADMIN), 201)
        unit_key = create_key(client, "wy", scopes=["read"])
        shown = ok(client.get("/api/v1/channels", headers=unit_key))["items"]
        assert [c["url"] for c in shown] == [
            "http://127.0.0.1:9/cgi-bin/webhook/send?key=***",
            "http://127.0.0.1:9/robot/send?access_token=***",
            "http://127.0.0.1:9/open-apis/bot/v2/hook/***",
        ]
        admin = ok(client.get("/api/v1/channels", headers=ADMIN))["items"]
        assert [c["url"] for c in admin] == list(robots.values())


def test_one_robot_is_one_channel_however_its_url_is_spelt(sqlite_url):
    with make_client(sqlite_url) as client:
        city(client)
        url = "http://127.0.0.1:9/cgi-bin/webhook/send?key=k1"
        first = ok(client.post("/api/v1/channels", json={"unit": "wy", "kind": "wecom", "url": url}, headers=ADMIN), 201)
        for spelt in (
            "HTTP://127.0.0.1:9/cgi-bin/webhook/send?key=k1",
            "http://127.0.0.1:9/cgi-bin/webhook/send?key=k1&",
            "http://127.0.0.1:9/cgi-bin/webhook/send?key=k1#top",
            "http://127.0.0.1:9//cgi-bin/webhook/send/?key=k1",
        ):
            r = client.post("/api/v1/channels", json={"unit": "wy", "kind": "wecom", "url": spelt}, headers=ADMIN)
            assert r.status_code == 409, (spelt, r.text)
        other = ok(client.post("/api/v1/channels", json={"unit": "wy", "kind": "wecom", "url": url.replace("k1", "k2")}, headers=ADMIN), 201)
        r = client.patch(f"/api/v1/channels/{other['id']}", json={"url": url + "&"}, headers=ADMIN)
        assert r.status_code == 409 and str(first["id"]) in r.json()["detail"]
        # Patching a channel to its own URL, spelt another way, is no conflict.
        ok(client.patch(f"/api/v1/channels/{first['id']}", json={"url": url + "#x"}, headers=ADMIN))

        hook = {"url": "http://127.0.0.1:9/h", "secret": "s3cret-123", "events": ["blocker.close"]}
        ok(client.post("/api/v1/webhooks", json=hook, headers=ADMIN), 201)
        twin = client.post("/api/v1/webhooks", json=hook, headers=ADMIN)
        assert twin.status_code == 409, twin.text
        # Another secret on the same URL: a rotation in progress.
        ok(client.post("/api/v1/webhooks", json={**hook, "secret": "n3w-secret-456"}, headers=ADMIN), 201)


def test_after_an_outage_every_dead_row_a_key_may_retry_is_requeued_in_one_call(db_url):
    """The county's robot key was wrong for a while: its rows went dead. Once fixed, one
    call requeues them all (a unit's key: only its own), each keeping its delivery id."""
    with WeComRobot({"wy-key", "hj-key"}) as wecom, make_client(db_url) as client:
        city(client)
        channels = {
            unit: ok(client.post("/api/v1/channels", json={"unit": unit, "kind": "wecom", "url": wecom.url("wrong-" + unit)},
                                 headers=ADMIN), 201)["id"]
            for unit in ("wy", "hj")
        }
        create_project(client, "P1", "wy")
        create_project(client, "P2", "hj")
        for project, unit in (("P1", "wy"), ("P1", "wy"), ("P2", "hj")):
            bid = create_blocker(client, project)["id"]
            ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": unit, "deadline": {"working_days": 5}},
                           headers=ADMIN))
        deliver(client, 2)
        dead = ok(client.get("/api/v1/notifications", params={"status": "dead"}, headers=ADMIN))["items"]
        assert sorted(r["channel"] for r in dead) == sorted([channels["wy"]] * 2 + [channels["hj"]])
        wy_key = create_key(client, "wy")

        # Refused, changing nothing: bad filters, unknown things, a read-only key.
        for body in ({"status": "sent"}, {"status": "pending"}, {"channel": "1"}, {"blocker": 0}, {"unknown": 1}):
            answer = client.post("/api/v1/notifications/retry", json=body, headers=wy_key)
            assert answer.status_code == 422, (body, answer.text)
        assert client.post("/api/v1/notifications/retry", json={"channel": 999999}, headers=wy_key).status_code == 404
        # Another county's channel or blocker is "not found" too, like one that does not exist.
        hj_blocker = next(r["blocker_id"] for r in dead if r["channel"] == channels["hj"])
        for body in ({"channel": channels["hj"]}, {"blocker": hj_blocker}):
            assert client.post("/api/v1/notifications/retry", json=body, headers=wy_key).status_code == 404
        reader = create_key(client, "wy", scopes=("read",))
        assert client.post("/api/v1/notifications/retry", json={}, headers=reader).status_code == 403
        assert len(ok(client.get("/api/v1/notifications", params={"status": "dead"}, headers=ADMIN))["items"]) == 3

        for unit in ("wy", "hj"):
            ok(client.patch(f"/api/v1/channels/{channels[unit]}", json={"url": wecom.url(unit + "-key")}, headers=ADMIN))
        # The county's key requeues its own two rows, not hj's; asked again, nothing is dead.
        assert ok(client.post("/api/v1/notifications/retry", json={}, headers=wy_key), 202) == {"requeued": 2}
        assert ok(client.post("/api/v1/notifications/retry", json={}, headers=wy_key), 202) == {"requeued": 0}
        deliver(client, 2)
        after = {r["id"]: r for r in ok(client.get("/api/v1/notifications", headers=ADMIN))["items"]}
        for row in dead:
            assert after[row["id"]]["delivery_id"] == row["delivery_id"]
            assert after[row["id"]]["status"] == ("sent" if row["channel"] == channels["wy"] else "dead")
        assert len(wecom.messages) == 2
        # The admin's call, for one channel.
        answer = client.post("/api/v1/notifications/retry", json={"channel": channels["hj"]}, headers=ADMIN)
        assert ok(answer, 202) == {"requeued": 1}
        deliver(client, 2)
        assert {r["status"] for r in ok(client.get("/api/v1/notifications", headers=ADMIN))["items"]} == {"sent"}
        assert len(wecom.messages) == 3
