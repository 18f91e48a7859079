"""api.md read literally, where a client written from it alone used to be refused: short
webhook secrets, null for optional fields, a bare version in If-Match, and the jurisdiction
of a key that also has the `admin` scope."""

from __future__ import annotations

from tests.helpers import ADMIN, city, create_blocker, create_key, create_project, make_client, ok


def test_what_api_md_allows_is_allowed(db_url):
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        # `secret` has no length in the contract.
        hook = {"url": "http://127.0.0.1:9/hook", "secret": "secret", "events": ["blocker.escalated"]}
        ok(client.post("/api/v1/webhooks", json=hook, headers=ADMIN), 201)
        # null for an optional field is "not given".
        unit = {"code": "wy-t", "name": "某镇", "level": "township", "kind": "government", "parent": "wy",
                "tags": None}
        ok(client.post("/api/v1/units", json=unit, headers=ADMIN), 201)
        blocker = create_blocker(client, "P1", authority_level=None, description=None, reported_by=None)
        assert (blocker["authority_level"], blocker["description"]) == ("county", "")
        body = {"unit": "wy", "officer_id": None, "assisting_units": None, "deadline": {"working_days": 5}}
        assigned = ok(client.post(f"/api/v1/blockers/{blocker['id']}/assign", json=body, headers=ADMIN))
        assert assigned["assisting_units"] == [] and assigned["version"] == 2
        # A bare version in If-Match is read like the quoted one.
        stale = client.post(f"/api/v1/blockers/{blocker['id']}/acknowledge", json={},
                            headers={**ADMIN, "If-Match": "1"})
        assert stale.status_code == 412 and ok(client.get(f"/api/v1/blockers/{blocker['id']}",
                                                          headers=ADMIN))["version"] == 2
        ok(client.post(f"/api/v1/blockers/{blocker['id']}/acknowledge", json={}, headers={**ADMIN, "If-Match": "2"}))
        bad = client.post(f"/api/v1/blockers/{blocker['id']}/feedback", json={"note": "n"},
                          headers={**ADMIN, "If-Match": "three"})
        assert bad.status_code == 422


def test_a_key_with_the_admin_scope_still_keeps_to_its_jurisdiction(db_url):
    """api.md: "A key sees and acts only within its unit's jurisdiction" — the `admin` scope
    lets a county's key administer its county, not read or act on another county's
    blockers, nor mint itself a way into them (a key for another county or the city)."""
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P-hj", "hj")
        create_project(client, "P-wy", "wy")
        theirs = create_blocker(client, "P-hj")["id"]
        ok(client.post(f"/api/v1/blockers/{theirs}/assign", json={"unit": "hj", "deadline": {"working_days": 5}},
                       headers=ADMIN))
        ours = create_blocker(client, "P-wy")["id"]
        wy_admin = create_key(client, "wy", scopes=("read", "write", "admin"))
        assert client.get(f"/api/v1/blockers/{theirs}", headers=wy_admin).status_code == 404
        acted = client.post(f"/api/v1/blockers/{theirs}/acknowledge", json={}, headers=wy_admin)
        assert acted.status_code == 403
        listed = ok(client.get("/api/v1/blockers", headers=wy_admin))["items"]
        assert [b["id"] for b in listed] == [ours]
        assert ok(client.get(f"/api/v1/blockers/{theirs}", headers=ADMIN))["version"] == 2
        # It administers its own county, and reads back what it lists or creates there.
        unit = {"code": "wy-z", "name": "某镇", "level": "township", "kind": "government", "parent": "wy"}
        ok(client.post("/api/v1/units", json=unit, headers=wy_admin), 201)
        listed_units = {u["code"] for u in ok(client.get("/api/v1/units?limit=500", headers=wy_admin))["items"]}
        assert listed_units == {"wy", "wy-zrzy", "wy-z"}
        officer = ok(client.post("/api/v1/officers", json={"name": "赵六", "mobile": "13900000009", "unit": "wy-z",
                                                           "role": "staff"}, headers=wy_admin), 201)
        assert ok(client.get(f"/api/v1/officers/{officer['id']}", headers=wy_admin))["unit"] == "wy-z"
        ok(client.post("/api/v1/api-keys", json={"name": "镇", "unit": "wy-z", "scopes": ["read"]}, headers=wy_admin), 201)
        # Nothing beyond it: another county, the city taskforce, the whole city's calendar.
        before = {path: ok(client.get(path, headers=ADMIN)) for path in
                  ("/api/v1/units?limit=500", "/api/v1/officers?limit=500", "/api/v1/api-keys?limit=500",
                   "/api/v1/calendar/2027")}
        for path, body in (
            ("/api/v1/units", {**unit, "code": "hj-z", "parent": "hj"}),
            ("/api/v1/units", {**unit, "code": "new-root", "level": "city", "parent": None}),
            ("/api/v1/officers", {"name": "钱七", "mobile": "13900000010", "unit": "hj", "role": "staff"}),
            ("/api/v1/api-keys", {"name": "k", "unit": "hj", "scopes": ["read", "write"]}),
            ("/api/v1/api-keys", {"name": "k", "unit": "xx-zb", "scopes": ["read", "write", "admin"]}),
            ("/api/v1/channels", {"unit": "hj", "kind": "wecom", "url": "http://127.0.0.1:9/cgi-bin/webhook/send?key=x"}),
        ):
            answer = client.post(path, json=body, headers=wy_admin)
            assert answer.status_code == 403, (path, body, answer.text)
        assert client.put("/api/v1/calendar/2027", json={"holidays": ["2027-01-01"]}, headers=wy_admin).status_code == 403
        assert client.patch("/api/v1/units/hj", json={"name": "x"}, headers=wy_admin).status_code == 404
        for path in before:
            assert ok(client.get(path, headers=ADMIN)) == before[path]
        hj_key = ok(client.post("/api/v1/api-keys", json={"name": "k", "unit": "hj", "scopes": ["read"]},
                                headers=ADMIN), 201)
        assert {k["unit"] for k in ok(client.get("/api/v1/api-keys?limit=500", headers=wy_admin))["items"]} == {"wy", "wy-z"}
        for action in ("revoke", "rotate"):
            assert client.post(f"/api/v1/api-keys/{hj_key['id']}/{action}", headers=wy_admin).status_code == 404
        # On its own county's blockers it acts in its roles: it cannot verify its own work.
        ok(client.post(f"/api/v1/blockers/{ours}/assign", json={"unit": "wy", "deadline": {"working_days": 5}},
                       headers=ADMIN))
        ok(client.post(f"/api/v1/blockers/{ours}/acknowledge", json={}, headers=wy_admin))
        ok(client.post(f"/api/v1/blockers/{ours}/report_resolved", json={"note": "已办"}, headers=wy_admin))
        verify = client.post(f"/api/v1/blockers/{ours}/verify", json={"satisfied": True, "note": "自评满意"},
                             headers=wy_admin)
        assert verify.status_code == 403, verify.text
        # A subscription the admin made is neither listed among channels nor changed.
        hook = ok(client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/all", "secret": "s",
                                                         "events": ["*"]}, headers=ADMIN), 201)
        assert hook["channel_id"] not in {c["id"] for c in ok(client.get("/api/v1/channels", headers=wy_admin))["items"]}
        assert client.patch(f"/api/v1/channels/{hook['channel_id']}", json={"enabled": False},
                            headers=wy_admin).status_code == 404


def test_allowed_actions_are_those_of_the_key_that_asks(db_url):
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        wy, taskforce = create_key(client, "wy"), create_key(client, "xx-zb")
        bid = create_blocker(client, "P1")["id"]

        def offered(key) -> set[str]:
            return set(ok(client.get(f"/api/v1/blockers/{bid}", headers=key))["allowed_actions"])

        assert "assign" in offered(taskforce) and "assign" not in offered(wy)
        assert client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 5}},
                           headers=wy).status_code == 403
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 5}},
                       headers=taskforce))
        assert "acknowledge" in offered(wy) and "acknowledge" not in offered(taskforce)
        ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=wy))
        resolved = ok(client.post(f"/api/v1/blockers/{bid}/report_resolved", json={"note": "已办"}, headers=wy))
        assert "verify" not in resolved["allowed_actions"]  # the answer to wy's own action, for wy
        assert "verify" in offered(taskforce) and "verify" in offered(ADMIN)
        listed = ok(client.get("/api/v1/blockers", headers=wy))["items"]
        assert [set(b["allowed_actions"]) for b in listed] == [offered(wy)]
        assert offered(create_key(client, "wy", scopes=("read",))) == set()  # it may only read


def test_a_created_blocker_has_its_etag_and_is_found_by_external_ref(db_url):
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        body = {"project": "P1", "title": "用地手续办理滞后", "category": "用地", "external_ref": "GT-7"}
        first = client.post("/api/v1/blockers", json=body, headers={**ADMIN, "Idempotency-Key": "k7"})
        assert first.status_code == 201 and first.headers["etag"] == '"1"'
        replay = client.post("/api/v1/blockers", json=body, headers={**ADMIN, "Idempotency-Key": "k7"})
        twin = client.post("/api/v1/blockers", json=body, headers=ADMIN)
        assert replay.headers["etag"] == twin.headers["etag"] == '"1"' and twin.status_code == 200
        create_blocker(client, "P1", external_ref="GT-8")
        found = ok(client.get("/api/v1/blockers", params={"external_ref": "GT-7"}, headers=ADMIN))["items"]
        assert [b["id"] for b in found] == [first.json()["id"]]


def test_a_secret_is_signed_with_exactly_as_given(sqlite_url):
    from tests.notifiers.fakes import WebhookReceiver
    from tests.service.test_end_to_end_notifications import deliver

    with WebhookReceiver(" padded secret ") as hook, make_client(sqlite_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        body = {"url": hook.url, "secret": " padded secret ", "events": ["blocker.created"]}
        ok(client.post("/api/v1/webhooks", json=body, headers=ADMIN), 201)
        create_blocker(client, "P1")
        deliver(client, 2)
        assert len(hook.deliveries) == 1 and hook.rejected == 0


def test_the_ladder_and_the_city_are_administered_from_the_top_only(db_url):
    """A county's admin key cannot tag its own unit into the ladder (and take the city's
    queue); a taskforce's admin key sees the whole city's blockers but administers its own
    unit only; the city's own admin key does the rest."""
    with make_client(db_url) as client:
        city(client)
        wy_admin = create_key(client, "wy", scopes=("read", "write", "admin"))
        taskforce_admin = create_key(client, "xx-zb", scopes=("read", "write", "admin"))
        city_admin = create_key(client, "xx", scopes=("read", "write", "admin"))
        units = ok(client.get("/api/v1/units?limit=500", headers=ADMIN))
        township = {"code": "wy-t", "name": "某镇", "level": "township", "kind": "government", "parent": "wy"}
        for method, path, body, key in (
            ("PATCH", "/api/v1/units/wy", {"tags": ["general_taskforce", "oversees:hj"]}, wy_admin),
            ("PATCH", "/api/v1/units/wy", {"tags": None}, wy_admin),
            ("POST", "/api/v1/units", {**township, "tags": ["city_government"]}, wy_admin),
            ("POST", "/api/v1/api-keys", {"name": "k", "unit": "xx", "scopes": ["read", "admin"]}, taskforce_admin),
            ("POST", "/api/v1/api-keys", {"name": "k", "unit": "wy", "scopes": ["read"]}, taskforce_admin),
            ("PUT", "/api/v1/calendar/2028", {"holidays": ["2028-01-03"]}, taskforce_admin),
            ("PATCH", "/api/v1/units/xx-cwfsz", {"tags": ["sector:用地"]}, taskforce_admin),
        ):
            answer = client.request(method, path, json=body, headers=key)
            assert answer.status_code in (403, 404), (path, body, answer.text)
        assert ok(client.get("/api/v1/units?limit=500", headers=ADMIN)) == units
        root_key = next(k for k in ok(client.get("/api/v1/api-keys?limit=500", headers=ADMIN))["items"]
                        if k["unit"] == "xx")
        assert client.post(f"/api/v1/api-keys/{root_key['id']}/rotate", headers=taskforce_admin).status_code == 404
        # The taskforce key still reads the city (its jurisdiction for blockers) ...
        assert {u["code"] for u in ok(client.get("/api/v1/units?limit=500", headers=taskforce_admin))["items"]} >= {"wy", "hj"}
        # ... and the county renames itself; the city's own admin key tags and loads the calendar.
        assert ok(client.patch("/api/v1/units/wy", json={"name": "原阳县人民政府（新）"}, headers=wy_admin))["tags"] == []
        assert ok(client.patch("/api/v1/units/xx-fsz-land", json={"tags": ["sector:用地", "oversees:hj"]},
                               headers=city_admin))["tags"] == ["sector:用地", "oversees:hj"]
        ok(client.put("/api/v1/calendar/2028", json={"holidays": ["2028-01-03"]}, headers=city_admin))
        ok(client.delete("/api/v1/calendar/2028", headers=city_admin))
