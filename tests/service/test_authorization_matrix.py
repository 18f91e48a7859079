"""Every endpoint × every kind of caller, against another unit's objects: the documented answer.

Keys: none, a key of another county (wrong unit), a read-only key of the owning county,
the owning county's read-write key, the city general taskforce's key, the admin key.
Reads outside a key's jurisdiction are 404 (no existence leak), actions 403.
"""

from __future__ import annotations

import re
import uuid

import pytest

from tests.helpers import ADMIN, city, create_blocker, create_key, create_project, make_client, ok

CALLERS = ("none", "wrong_unit", "read_only", "unit", "taskforce", "admin")


def _assigned_blocker(client) -> int:
    b = create_blocker(client, "P1")
    ok(client.post(f"/api/v1/blockers/{b['id']}/assign", json={"unit": "wy", "deadline": {"working_days": 5}},
                   headers=ADMIN))
    return b["id"]


def _resolved_blocker(client) -> int:
    bid = _assigned_blocker(client)
    ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
    ok(client.post(f"/api/v1/blockers/{bid}/report_resolved", json={"note": "ok"}, headers=ADMIN))
    return bid


def _escalation_for_taskforce(client) -> int:
    """An entry in the general taskforce's queue, on a blocker of the owning county."""
    bid = _assigned_blocker(client)
    ok(client.post(f"/api/v1/blockers/{bid}/request_escalation", json={"reason": "需市级层面协调"},
                   headers=ADMIN))
    entries = ok(client.get("/api/v1/escalations?status=open&limit=500", headers=ADMIN))["items"]
    return next(e["id"] for e in entries if e["blocker_id"] == bid)


def _spare_key(client) -> int:
    """Another read key of the owning county (the one a revocation may take away)."""
    ok(client.post("/api/v1/api-keys", json={"name": "spare", "unit": "wy", "scopes": ["read"]}, headers=ADMIN),
       201)
    return ok(client.get("/api/v1/api-keys?limit=500", headers=ADMIN))["items"][-1]["id"]


def _notification(client) -> int:
    """An undelivered outbox row about a blocker of the owning county (its robot is down)."""
    bid = _assigned_blocker(client)
    rows = ok(client.get(f"/api/v1/notifications?blocker={bid}", headers=ADMIN))["items"]
    return rows[0]["id"]


def _collected_blocker(client) -> int:
    return create_blocker(client, "P1")["id"]


def _acknowledged_blocker(client) -> int:
    bid = _assigned_blocker(client)
    ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
    return bid


def _verified_blocker(client) -> int:
    bid = _resolved_blocker(client)
    ok(client.post(f"/api/v1/blockers/{bid}/verify", json={"satisfied": True, "note": "满意"}, headers=ADMIN))
    return bid


def _officer(client) -> int:
    return ok(client.post("/api/v1/officers", json={"name": "赵六", "mobile": "13900000009", "unit": "wy",
                                                    "role": "liaison"}, headers=ADMIN), 201)["id"]


def _event(client) -> int:
    """The newest event of a blocker of the owning county."""
    return ok(client.get(f"/api/v1/blockers/{_assigned_blocker(client)}", headers=ADMIN))["timeline"][-1]["id"]


def _loaded_year(client) -> int:
    """A year loaded by the admin (2028), which a DELETE drops again."""
    ok(client.put("/api/v1/calendar/2028", json={"holidays": ["2028-01-03"]}, headers=ADMIN))
    return 2028


def _channel(client) -> int:
    """Another chat group of the owning county."""
    body = {"unit": "wy", "kind": "wecom", "url": f"http://127.0.0.1:9/cgi-bin/webhook/send?key={uuid.uuid4().hex}"}
    return ok(client.post("/api/v1/channels", json=body, headers=ADMIN), 201)["id"]


def _admin_webhook(client) -> int:
    """An outbound subscription the admin made."""
    body = {"url": f"http://127.0.0.1:9/h/{uuid.uuid4().hex}", "secret": "s3cret-123", "events": ["blocker.close"]}
    return ok(client.post("/api/v1/webhooks", json=body, headers=ADMIN), 201)["id"]


# (name, method, path, body, fixture, expected per caller)
MATRIX = [
    ("list units", "GET", "/api/v1/units", None, None, dict(none=401, wrong_unit=200, read_only=200, unit=200, taskforce=200, admin=200)),
    ("read unit", "GET", "/api/v1/units/wy", None, None, dict(none=401, wrong_unit=404, read_only=200, unit=200, taskforce=200, admin=200)),
    ("read officer", "GET", "/api/v1/officers/{b}", None, _officer,
     dict(none=401, wrong_unit=404, read_only=200, unit=200, taskforce=200, admin=200)),
    ("update officer", "PATCH", "/api/v1/officers/{b}", {"mobile": "13900000010"}, _officer,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=403, admin=200)),
    ("update unit", "PATCH", "/api/v1/units/wy", {"name": "原阳县人民政府"}, None,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=403, admin=200)),
    ("create unit", "POST", "/api/v1/units", {"code": "new-{c}", "name": "n", "level": "township", "kind": "government", "parent": "wy"}, None,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=403, admin=201)),
    ("create officer", "POST", "/api/v1/officers", {"name": "王五", "mobile": "13700000000", "unit": "wy", "role": "staff"}, None,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=403, admin=201)),
    ("create key", "POST", "/api/v1/api-keys", {"name": "k", "unit": "wy", "scopes": ["read"]}, None,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=403, admin=201)),
    ("list keys", "GET", "/api/v1/api-keys", None, None,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=403, admin=200)),
    ("revoke key", "POST", "/api/v1/api-keys/{b}/revoke", None, _spare_key,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=403, admin=200)),
    ("revoke missing key", "POST", "/api/v1/api-keys/999999/revoke", None, None,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=403, admin=404)),
    ("rotate key", "POST", "/api/v1/api-keys/{b}/rotate", {"overlap_s": 60}, _spare_key,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=403, admin=200)),
    ("create channel", "POST", "/api/v1/channels", {"unit": "wy", "kind": "wecom", "url": "http://127.0.0.1:9/cgi-bin/webhook/send?key=x"}, None,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=403, admin=201)),
    ("update channel", "PATCH", "/api/v1/channels/{b}", {"enabled": True}, _channel,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=403, admin=200)),
    ("read project", "GET", "/api/v1/projects/P1", None, None, dict(none=401, wrong_unit=404, read_only=200, unit=200, taskforce=200, admin=200)),
    ("create project", "POST", "/api/v1/projects", {"code": "P-{c}", "name": "n", "category": "省市重点", "county": "wy"}, None,
     dict(none=401, wrong_unit=403, read_only=403, unit=201, taskforce=201, admin=201)),
    ("create blocker", "POST", "/api/v1/blockers", {"project": "P1", "title": "t", "category": "用地"}, None,
     dict(none=401, wrong_unit=403, read_only=403, unit=201, taskforce=201, admin=201)),
    ("read blocker", "GET", "/api/v1/blockers/{b}", None, _assigned_blocker, dict(none=401, wrong_unit=404, read_only=200, unit=200, taskforce=200, admin=200)),
    ("assign", "POST", "/api/v1/blockers/{b}/assign", {"unit": "wy", "deadline": {"working_days": 5}}, _collected_blocker,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=200, admin=200)),
    ("report resolved", "POST", "/api/v1/blockers/{b}/report_resolved", {"note": "已解决"}, _acknowledged_blocker,
     dict(none=401, wrong_unit=403, read_only=403, unit=200, taskforce=403, admin=200)),
    ("close", "POST", "/api/v1/blockers/{b}/close", {"note": "销号"}, _verified_blocker,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=200, admin=200)),
    ("acknowledge", "POST", "/api/v1/blockers/{b}/acknowledge", {}, _assigned_blocker,
     dict(none=401, wrong_unit=403, read_only=403, unit=200, taskforce=403, admin=200)),
    ("feedback before acknowledging", "POST", "/api/v1/blockers/{b}/feedback", {"note": "n"}, _assigned_blocker,
     dict(none=401, wrong_unit=403, read_only=403, unit=409, taskforce=409, admin=409)),
    ("verify", "POST", "/api/v1/blockers/{b}/verify", {"satisfied": True, "note": "满意"}, _resolved_blocker,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=200, admin=200)),
    ("withdraw", "POST", "/api/v1/blockers/{b}/withdraw", {"reason": "重复"}, _assigned_blocker,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=200, admin=200)),
    ("request escalation", "POST", "/api/v1/blockers/{b}/request_escalation", {"reason": "需市级协调"}, _assigned_blocker,
     dict(none=401, wrong_unit=403, read_only=403, unit=200, taskforce=200, admin=200)),
    ("acknowledge escalation", "POST", "/api/v1/escalations/{b}/acknowledge", {}, _escalation_for_taskforce,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=200, admin=200)),
    ("handle escalation", "POST", "/api/v1/escalations/{b}/handle", {"note": "已协调"}, _escalation_for_taskforce,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=200, admin=200)),
    ("retry notification", "POST", "/api/v1/notifications/{b}/retry", None, _notification,
     dict(none=401, wrong_unit=403, read_only=403, unit=202, taskforce=202, admin=202)),
    ("retry notifications", "POST", "/api/v1/notifications/retry", {}, _notification,  # each its own rows
     dict(none=401, wrong_unit=202, read_only=403, unit=202, taskforce=202, admin=202)),
    ("acknowledge missing escalation", "POST", "/api/v1/escalations/999999/acknowledge", {}, None,
     dict(none=401, wrong_unit=404, read_only=403, unit=404, taskforce=404, admin=404)),
    ("retry missing notification", "POST", "/api/v1/notifications/999999/retry", None, None,
     dict(none=401, wrong_unit=404, read_only=403, unit=404, taskforce=404, admin=404)),
    ("calendar read", "GET", "/api/v1/calendar/2026", None, None, dict(none=401, wrong_unit=200, read_only=200, unit=200, taskforce=200, admin=200)),
    ("calendar write", "PUT", "/api/v1/calendar/2027", {"holidays": ["2027-01-01"], "workdays": []}, None,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=403, admin=200)),
    ("calendar drop", "DELETE", "/api/v1/calendar/{b}", None, _loaded_year,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=403, admin=200)),
    ("read clock", "GET", "/api/v1/admin/clock", None, None,
     dict(none=401, wrong_unit=200, read_only=200, unit=200, taskforce=200, admin=200)),
    ("unit report", "GET", "/api/v1/reports/units?from=2026-03-01&to=2026-03-31", None, None,
     dict(none=401, wrong_unit=200, read_only=200, unit=200, taskforce=200, admin=200)),
    ("unit report as a spreadsheet", "GET", "/api/v1/reports/units/export?from=2026-03-01&to=2026-03-31", None, None,
     dict(none=401, wrong_unit=200, read_only=200, unit=200, taskforce=200, admin=200)),
    ("clock", "POST", "/api/v1/admin/clock", {"advance": "PT1M"}, None,
     dict(none=401, wrong_unit=403, read_only=403, unit=403, taskforce=403, admin=200)),
    ("list webhooks", "GET", "/api/v1/webhooks", None, None,
     dict(none=401, wrong_unit=200, read_only=200, unit=200, taskforce=200, admin=200)),
    ("remove the admin's webhook", "DELETE", "/api/v1/webhooks/{b}", None, _admin_webhook,
     dict(none=401, wrong_unit=404, read_only=403, unit=404, taskforce=404, admin=204)),
    ("webhook", "POST", "/api/v1/webhooks", {"url": "http://127.0.0.1:9/h-{c}", "secret": "s3cret-123", "events": ["blocker.close"]}, None,
     dict(none=401, wrong_unit=201, read_only=403, unit=201, taskforce=201, admin=201)),
]


# Lists answer 200 to every key and hold only what the key may see: (name, path, fixture
# making an object of the owning county, the field naming it, whether each caller sees it).
SEEN = dict(none=401, wrong_unit=False, read_only=True, unit=True, taskforce=True, admin=True)
LISTS = [
    ("blockers", "/api/v1/blockers", _assigned_blocker, "id", SEEN),
    ("channels", "/api/v1/channels", _channel, "id", SEEN),
    ("events", "/api/v1/events", _event, "id", SEEN),
    ("notifications", "/api/v1/notifications", _notification, "id", SEEN),
    ("officers", "/api/v1/officers", _officer, "id", SEEN),
    ("projects", "/api/v1/projects", lambda client: "P1", "code", SEEN),
    ("project report", "/api/v1/reports/projects", lambda client: "P1", "project", SEEN),
    # The queue of the caller's level: the county does not see what went above it.
    ("escalation queue", "/api/v1/escalations", _escalation_for_taskforce, "id",
     {**SEEN, "read_only": False, "unit": False}),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory, sqlite_template):
    import shutil

    path = tmp_path_factory.mktemp("authz") / "db.db"
    shutil.copy(sqlite_template, path)
    with make_client(f"sqlite:///{path}") as client:
        city(client)
        create_project(client, "P1", "wy")
        body = {"unit": "wy", "kind": "webhook", "url": "http://127.0.0.1:9/down", "secret": "s3cret-123"}
        ok(client.post("/api/v1/channels", json=body, headers=ADMIN), 201)
        keys = {
            "none": {},
            "wrong_unit": create_key(client, "hj"),
            "read_only": create_key(client, "wy", scopes=["read"]),
            "unit": create_key(client, "wy"),
            "taskforce": create_key(client, "xx-zb"),
            "admin": ADMIN,
        }
        yield client, keys


@pytest.mark.parametrize("case", MATRIX, ids=[row[0] for row in MATRIX])
def test_authorization_matrix(world, case):
    client, keys = world
    name, method, path, body, fixture, expected = case
    for n, caller in enumerate(CALLERS):
        target = fixture(client) if fixture else None
        url = path.format(b=target, c=f"{caller}{n}")
        payload = None if body is None else {k: (v.format(c=f"{caller}{n}") if isinstance(v, str) else v)
                                             for k, v in body.items()}
        response = client.request(method, url, json=payload, headers=keys[caller])
        assert response.status_code == expected[caller], (name, caller, response.status_code, response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("case", LISTS, ids=[row[0] for row in LISTS])
def test_lists_hold_only_what_the_key_may_see(world, case):
    client, keys = world
    _, path, fixture, field, expected = case
    target = fixture(client)
    for caller in CALLERS:
        seen, cursor = False, None
        while True:  # every page
            paging = "after" if path.endswith("/events") else "cursor"  # the feed's own name
            params = {"limit": 500, **({paging: cursor} if cursor else {})}
            response = client.get(path, params=params, headers=keys[caller])
            if response.status_code != 200:
                break
            page = response.json()
            items = page["items"] if isinstance(page, dict) else page
            seen = seen or any(item.get(field) == target for item in items)
            cursor = page.get("next_cursor") if isinstance(page, dict) else None
            if not cursor:
                break
        answer = seen if response.status_code == 200 else response.status_code
        assert answer == expected[caller], (path, caller, answer)


def test_every_operation_of_the_api_is_in_the_matrix(world):
    client, _ = world
    called = [(method, path.split("?")[0].format(b=1)) for _, method, path, *_ in MATRIX]
    called += [("GET", path) for _, path, *_ in LISTS]
    missing = []
    for template, operations in client.app.openapi()["paths"].items():  # every documented one
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")
        for method in operations:
            if template.startswith("/api/v1/") and not any(
                m == method.upper() and pattern.match(p) for m, p in called
            ):
                missing.append(f"{method.upper()} {template}")
    assert len(client.app.openapi()["paths"]) > 30 and missing == []


def test_mass_assignment_is_refused(world):
    client, _ = world
    bid = _assigned_blocker(client)
    for field, value in (("state", "closed"), ("version", 99), ("escalation_level", 3), ("hash", "0" * 64),
                         ("last_hash", "x")):
        r = client.post("/api/v1/blockers", json={"project": "P1", "title": "t", "category": "用地", field: value},
                        headers=ADMIN)
        assert r.status_code == 422 and field in r.json()["detail"]
        r = client.post(f"/api/v1/blockers/{bid}/feedback", json={"note": "n", field: value}, headers=ADMIN)
        assert r.status_code == 422
    after = ok(client.get(f"/api/v1/blockers/{bid}", headers=ADMIN))
    assert after["state"] == "assigned" and after["version"] == 2 and after["escalation_level"] == 0


def test_write_only_key_cannot_read(world):
    client, _ = world
    writer = create_key(client, "wy", scopes=["write"])
    assert client.get("/api/v1/units/wy", headers=writer).status_code == 403
    created = client.post("/api/v1/blockers", json={"project": "P1", "title": "t", "category": "用地"}, headers=writer)
    assert created.status_code == 201
