"""Plain create_* helpers and a hand-driven clock for the notifier tests."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import select

from notifiers.dingtalk import DingTalkNotifier
from notifiers.dispatcher import Dispatcher
from notifiers.email import EmailNotifier
from notifiers.feishu import FeishuNotifier
from notifiers.webhook import WebhookNotifier
from notifiers.wecom import WeComNotifier
from service import migrations
from service.db import Database
from service.models import Channel, Notification, NotificationAttempt, Unit

# Monday 3 March 2025, 09:00 in Shanghai: the business clock stands still here.
BUSINESS_NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
LOOPBACK = frozenset({"127.0.0.1"})


class Clock:
    """Real time, moved by hand: ``clock()`` is a datetime, ``clock.time()`` epoch seconds."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def time(self) -> float:
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_db(tmp_path) -> Database:
    url = f"sqlite:///{tmp_path}/t.db"
    migrations.upgrade(url)
    return Database(url)


def notifiers_on(clock: Clock) -> dict[str, Any]:
    """The registry, with signature timestamps taken from the test clock."""
    return {
        "wecom": WeComNotifier(),
        "dingtalk": DingTalkNotifier(clock=clock.time),
        "feishu": FeishuNotifier(clock=clock.time),
        "webhook": WebhookNotifier(),
        "email": EmailNotifier(),
    }


def make_dispatcher(db: Database, clock: Clock, **kwargs: Any) -> Dispatcher:
    kwargs.setdefault("allowed_hosts", LOOPBACK)
    kwargs.setdefault("business_now", lambda: BUSINESS_NOW)
    kwargs.setdefault("notifiers", notifiers_on(clock))
    kwargs.setdefault("trust_env", False)  # each sending thread has its own client
    kwargs.setdefault("rng", random.Random(7))
    return Dispatcher(db, real_now=clock, **kwargs)


def create_unit(db: Database, code: str = "county-1", name: str = "滨江县人民政府") -> int:
    with db.unit_of_work() as s:
        unit = Unit(code=code, name=name, level="county", kind="government")
        s.add(unit)
        s.flush()
        return unit.id


def create_channel(
    db: Database, kind: str, url: str, secret: str | None = None, *, unit_id: int | None = None
) -> int:
    unit_id = unit_id or create_unit(db, code=f"unit-{uuid.uuid4().hex[:6]}")
    with db.unit_of_work() as s:
        channel = Channel(unit_id=unit_id, kind=kind, url=url, secret=secret)
        s.add(channel)
        s.flush()
        return channel.id


def blocker_context(n: int = 1, **overrides: Any) -> dict[str, Any]:
    context = {
        "blocker_id": n,
        "title": f"第{n}号事项：用地预审意见未出具",
        "category": "用地",
        "state": "supervised",
        "project_code": f"2401-330100-04-01-{n:06d}",
        "project_name": "滨江大道综合改造工程",
        "unit_name": "滨江县自然资源和规划局",
        "deadline": "2025-03-10",
        "working_days_left": 5,
        "overdue": False,
        "level": 0,
        "recipient_unit": "滨江县自然资源和规划局",
    }
    context.update(overrides)
    return context


def create_notifications(
    db: Database,
    channel_id: int,
    count: int = 1,
    *,
    kind: str = "deadline_reminder",
    mentions: Sequence[str] | None = None,
    event_type: str = "blocker.remind_deadline",
    not_before: datetime = BUSINESS_NOW,
    context: dict[str, Any] | None = None,
) -> list[int]:
    ids = []
    with db.unit_of_work() as s:
        for n in range(1, count + 1):
            row = Notification(
                channel_id=channel_id,
                kind=kind,
                event_type=event_type,
                delivery_id=uuid.uuid4().hex,
                mentions=list(mentions) if mentions is not None else [f"1380000{n:04d}"],
                context=context if context is not None else blocker_context(n),
                not_before=not_before,
            )
            s.add(row)
            s.flush()
            ids.append(row.id)
    return ids


def rows(db: Database, ids: Sequence[int] | None = None) -> list[Notification]:
    with db.unit_of_work(readonly=True) as s:
        query = select(Notification).order_by(Notification.id)
        if ids is not None:
            query = query.where(Notification.id.in_(ids))
        return list(s.exec(query))


def attempts(db: Database, notification_id: int) -> list[NotificationAttempt]:
    with db.unit_of_work(readonly=True) as s:
        query = (
            select(NotificationAttempt)
            .where(NotificationAttempt.notification_id == notification_id)
            .order_by(NotificationAttempt.id)
        )
        return list(s.exec(query))


def drain(dispatcher: Dispatcher, clock: Clock, *, step_s: float = 1.0, rounds: int = 200) -> int:
    """Dispatch until nothing is pending, moving the clock ``step_s`` between rounds."""
    total = 0
    for _ in range(rounds):
        total += dispatcher.dispatch_once()
        if all(r.status in ("sent", "dead") for r in rows(dispatcher.db)):
            return total
        clock.advance(step_s)
    raise AssertionError("the outbox did not drain")
