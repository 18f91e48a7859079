"""A deadline on a day off: no working day is left before it, but it is not due today.

The 1-working-day reminder for a deadline on Saturday 2026-10-03 (in the National Day
holiday) fires on Wednesday 09-30; it used to tell the group 今日到期 three days early.
"""

from __future__ import annotations

from sqlmodel import select

from notifiers.render import render
from service.models import Notification
from tests.helpers import (
    ADMIN,
    city,
    create_blocker,
    create_key,
    create_project,
    make_client,
    ok,
    set_clock,
)
from tests.service.test_end_to_end_notifications import add_group


def test_a_reminder_for_a_deadline_on_a_holiday_says_how_many_days_are_left(db_url):
    with make_client(db_url, clock_start="2026-09-28T09:00:00+08:00") as client:
        city(client)
        add_group(client, "wy")
        create_project(client, "P1", "wy")
        wy = create_key(client, "wy")
        bid = create_blocker(client, "P1")["id"]
        ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"date": "2026-10-03"}},
                       headers=ADMIN))
        ok(client.post(f"/api/v1/blockers/{bid}/acknowledge", json={}, headers=wy))
        set_clock(client, "2026-09-30T12:00:00+08:00")
        with client.app.state.db.unit_of_work(readonly=True) as session:
            rows = session.exec(
                select(Notification).where(Notification.blocker_id == bid,
                                           Notification.kind == "deadline_reminder")
            ).all()
            contexts = [dict(row.context) for row in rows]
    assert [(c["working_days_left"], c["days_left"]) for c in contexts] == [(0, 3)]
    text = render("deadline_reminder", contexts[0], "https://duban.example.gov.cn").text
    assert "今日到期" not in text
    assert "2026年10月3日（周六，3 天后到期，其间无工作日）" in text
