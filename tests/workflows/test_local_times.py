"""Times are stored UTC and shown in Asia/Shanghai: in every timeline payload and webhook body
too, not only in the blocker's own fields."""

from __future__ import annotations

import re

from sqlmodel import select

from service.models import Notification
from tests.helpers import ADMIN, advance, city, create_blocker, create_project, make_client, ok

INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _instants(value, where: str):
    """Every (where, string) in a JSON value that looks like a date-time."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _instants(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _instants(v, f"{where}[{i}]")
    elif isinstance(value, str) and INSTANT.match(value):
        yield where, value


def test_every_instant_in_timelines_and_webhooks_is_local(db_url):
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        hook = {"url": "http://127.0.0.1:9/hook", "secret": "s3cret-123", "events": ["*"]}
        ok(client.post("/api/v1/webhooks", json=hook, headers=ADMIN), 201)
        bid = create_blocker(client, "P1")["id"]
        body = {"unit": "wy", "deadline": {"working_days": 5}}
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json=body, headers=ADMIN))
        # One unacknowledged, past its deadline and up the ladder; the other still supervised
        # when a new holiday moves its deadline.
        other = create_blocker(client, "P1")["id"]
        longer = {"unit": "wy", "deadline": {"working_days": 20}}
        ok(client.post(f"/api/v1/blockers/{other}/assign", json=longer, headers=ADMIN))
        ok(client.post(f"/api/v1/blockers/{other}/acknowledge", json={}, headers=ADMIN))
        advance(client, "P10D")
        calendar = ok(client.get("/api/v1/calendar/2026", headers=ADMIN))
        holidays = [*calendar["holidays"], "2026-03-20"]
        put = {"holidays": holidays, "workdays": calendar["workdays"]}
        ok(client.put("/api/v1/calendar/2026", json=put, headers=ADMIN))
        seen = []
        for b in (bid, other):
            detail = ok(client.get(f"/api/v1/blockers/{b}", headers=ADMIN))
            seen += list(_instants(detail, f"blocker {b}"))
        with client.app.state.db.unit_of_work(readonly=True) as session:
            hooks = session.exec(select(Notification).where(Notification.kind == "webhook")).all()
            for row in hooks:
                seen += list(_instants(row.context, f"webhook {row.id}"))
        actions = {e["action"] for e in detail["timeline"]}
        assert {"assign", "reschedule"} <= actions, actions
        assert any(".payload.due_at" in where for where, _ in seen)
        assert any(".payload.basis_at" in where for where, _ in seen)
        assert len(hooks) > 5
        utc = [(where, value) for where, value in seen if not value.endswith("+08:00")]
        assert utc == []
