"""What a message says of the days left is true when the group reads it.

A deadline on a day off: no working day is left before it, but it is not due today. The
1-working-day reminder for a deadline on Saturday 2026-10-03 (in the National Day holiday)
fires on Wednesday 09-30, the last working day before it; it used to tell the group
今日到期 three days early.

A message held for office hours counts from when it is sent, not from when it was written.
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


def _contexts(client, bid: int, kind: str) -> list[dict]:
    with client.app.state.db.unit_of_work(readonly=True) as session:
        rows = session.exec(
            select(Notification).where(Notification.blocker_id == bid, Notification.kind == kind)
        ).all()
        return [dict(row.context) for row in rows]


def test_a_reminder_held_overnight_counts_the_days_left_in_the_morning(db_url):
    with make_client(db_url, clock_start="2026-09-21T09:00:00+08:00") as client:  # a Monday
        city(client)
        add_group(client, "wy")
        create_project(client, "P1", "wy")
        bid = create_blocker(client, "P1")["id"]
        b = ok(client.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 3}},
                           headers=ADMIN))
        assert b["deadline"] == "2026-09-24"
        # Not signed for by Tuesday's end: the reminder is written at 23:59:59 and held.
        set_clock(client, "2026-09-23T09:00:00+08:00")
        (reminder,) = _contexts(client, bid, "acknowledge_reminder")
    # Read on Wednesday morning: Thursday alone is left (on Tuesday it was two).
    assert (reminder["working_days_left"], reminder["days_left"]) == (1, 1)
    text = render("acknowledge_reminder", reminder, "https://duban.example.gov.cn").text
    assert "2026年9月24日（周四，剩余 1 个工作日）" in text


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
        contexts = _contexts(client, bid, "deadline_reminder")
    assert [(c["working_days_left"], c["days_left"], c["working_today"]) for c in contexts] == [(0, 3, True)]
    text = render("deadline_reminder", contexts[0], "https://duban.example.gov.cn").text
    assert "今日到期" not in text
    assert "2026年10月3日（周六，还有 3 天到期，今天是到期前最后一个工作日）" in text
