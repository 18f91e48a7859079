"""Fixtures for the notifier tests: a hand-driven clock, a fresh SQLite file, the fakes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.db import Database
from tests.notifiers.fakes import DingTalkRobot, FeishuBot, WebhookReceiver, WeComRobot
from tests.notifiers.helpers import Clock, make_db


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path) -> Iterator[Database]:
    database = make_db(tmp_path)
    yield database
    database.dispose()


@pytest.fixture
def wecom(clock) -> Iterator[WeComRobot]:
    with WeComRobot({"good-key"}, clock=clock.time) as fake:
        yield fake


@pytest.fixture
def dingtalk(clock) -> Iterator[DingTalkRobot]:
    robots: dict[str, str | None] = {"good-token": "SECdingtalk-secret", "plain-token": None}
    with DingTalkRobot(robots, clock=clock.time) as fake:
        yield fake


@pytest.fixture
def feishu(clock) -> Iterator[FeishuBot]:
    with FeishuBot({"good-hook": "feishu-secret"}, clock=clock.time) as fake:
        yield fake


@pytest.fixture
def receiver(clock) -> Iterator[WebhookReceiver]:
    with WebhookReceiver("hook-secret", clock=clock.time) as fake:
        yield fake


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request, tmp_path) -> Iterator[Database]:
    """A fresh database of each backend; PostgreSQL comes from the suite's ``pg_url``."""
    if request.param == "sqlite":
        database = make_db(tmp_path)
    else:
        try:
            url = request.getfixturevalue("pg_url")
        except pytest.FixtureLookupError:
            pytest.skip("no pg_url fixture in this test suite")
        database = Database(url)
    yield database
    database.dispose()
