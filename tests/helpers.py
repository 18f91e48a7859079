"""Plain create_* helpers for tests (no factory framework)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

ADMIN_KEY = "test-admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
# A Monday in an officially scheduled year: 2026-03-02 09:30 Asia/Shanghai.
START = "2026-03-02T09:30:00+08:00"


def make_client(db_url: str, *, clock_start: str = START, **overrides: Any) -> TestClient:
    overrides.setdefault("clock", "manual")
    settings = Settings(
        database_url=db_url,
        admin_key=ADMIN_KEY,
        clock_start=clock_start,
        channel_allowed_hosts="127.0.0.1,localhost",
        **overrides,
    )
    app = create_app(settings, background=False)
    return TestClient(app)


def ok(response, status: int = 200) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


def create_unit(client, code, name=None, level="county", kind="government", parent=None, tags=None):
    body = {"code": code, "name": name or code, "level": level, "kind": kind, "parent": parent}
    if tags:
        body["tags"] = tags
    return ok(client.post("/api/v1/units", json=body, headers=ADMIN), 201)


def create_officer(client, unit, name="张三", mobile="13800000001", role="liaison"):
    body = {"name": name, "mobile": mobile, "unit": unit, "role": role}
    return ok(client.post("/api/v1/officers", json=body, headers=ADMIN), 201)


def create_key(client, unit, scopes=("read", "write"), officer_id=None) -> dict[str, str]:
    body = {"name": f"key-{unit}", "unit": unit, "scopes": list(scopes), "officer_id": officer_id}
    key = ok(client.post("/api/v1/api-keys", json=body, headers=ADMIN), 201)["key"]
    return {"Authorization": f"Bearer {key}"}


def create_project(client, code="P1", county="wy", headers=ADMIN, **extra):
    body = {"code": code, "name": f"项目{code}", "category": "省市重点", "county": county, **extra}
    return ok(client.post("/api/v1/projects", json=body, headers=headers), 201)


def create_blocker(client, project="P1", headers=ADMIN, **extra):
    body = {"project": project, "title": "用地手续办理滞后", "category": "用地", **extra}
    return ok(client.post("/api/v1/blockers", json=body, headers=headers), 201)


def city(client) -> dict[str, Any]:
    """A small city: government, general taskforce, vice mayors, a county with a township."""
    create_unit(client, "xx", "新乡市人民政府", level="city", tags=["city_government"])
    create_unit(
        client,
        "xx-zb",
        "市综合专班",
        level="city",
        kind="taskforce",
        parent="xx",
        tags=["general_taskforce"],
    )
    create_unit(
        client,
        "xx-cwfsz",
        "常务副市长办公室",
        level="city",
        kind="leader",
        parent="xx",
        tags=["executive_vice_mayor"],
    )
    create_unit(
        client,
        "xx-fsz-land",
        "分管副市长（自然资源）",
        level="city",
        kind="leader",
        parent="xx",
        tags=["sector:用地"],
    )
    create_unit(client, "wy", "原阳县人民政府", parent="xx")
    create_unit(client, "wy-zrzy", "原阳县自然资源局", kind="department", parent="wy")
    create_unit(client, "hj", "获嘉县人民政府", parent="xx")
    officer = create_officer(client, "wy", "李四", "13900000002", "lead")
    return {"officer": officer}


def month_with_a_laggard(client, withdraw_at: str, laggards=(("P2", "hj"),), good=(("P1", "wy"),)) -> None:
    """A month in which the good units (by default wy, P1) acknowledge and resolve in time
    and each laggard (by default hj, P2) never acknowledges; their blockers are withdrawn
    at `withdraw_at` (so the month does not fill the groups with digests). Ranks the good
    units first and the laggards last. (project, unit) pairs."""
    late = []
    for project, unit in (*good, *laggards):
        bid = create_blocker(client, project)["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": unit, "deadline": {"working_days": 5}},
                       headers=ADMIN))
        if (project, unit) in good:
            ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=ADMIN))
            ok(client.post(f"/api/v1/blockers/{bid}/report_resolved", json={"note": "已办"}, headers=ADMIN))
        else:
            late.append(bid)
    set_clock(client, withdraw_at)
    for bid in late:
        ok(client.post(f"/api/v1/blockers/{bid}/withdraw", json={"reason": "重复上报"}, headers=ADMIN))


def set_clock(client, instant: str) -> dict:
    return ok(client.post("/api/v1/admin/clock", json={"set": instant}, headers=ADMIN))


def advance(client, duration: str) -> dict:
    return ok(client.post("/api/v1/admin/clock", json={"advance": duration}, headers=ADMIN))


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts)
