"""A city's IT team gets a sentence naming the variable, never a traceback; commands that
serve no API run without the admin key; a replica stays ready when a newer release has
already migrated the database (a rolling deploy)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service import migrations
from service.app import create_app
from service.settings import Settings
from tests.conftest import require_pg
from tests.helpers import make_client, ok

DUBAN = str(Path(sys.executable).with_name("duban"))
KEY = {"admin_key": "k" * 20}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("office_hours", "9-5"),
        ("office_hours", "25:00-26:00"),
        ("office_hours", "18:00-08:30"),  # overnight: nothing would ever be in office hours
        ("database_url", "notaurl"),
        ("database_url", "mysql://u@h/db"),
        ("clock_start", "yesterday"),
        ("clock_start", "2026-03-02T09:00:00"),  # no offset
        ("log_level", "loud"),
        ("public_url", "notaurl"),
        ("channel_allowed_hosts", "http://bad/host"),
        ("channel_allowed_hosts", "127.0.0.1:8080"),
        ("channel_allowed_hosts", "*"),
        ("clock_start", "9999-06-01T09:00:00+08:00"),  # past the calendar: the clock is stuck
    ],
)
def test_a_bad_setting_is_refused_with_its_reason(field, value):
    with pytest.raises(ValidationError) as caught:
        Settings(**{field: value}, **KEY)
    (error,) = caught.value.errors()
    assert error["loc"] == (field,)
    assert value in error["msg"] or "log level" in error["msg"] or "SQLite" in error["msg"]


def test_good_settings_pass():
    settings = Settings(
        office_hours="08:30-18:00",
        clock_start="2026-03-02T09:00:00+08:00",
        log_level="WARNING",
        public_url="https://duban.example.gov.cn",
        channel_allowed_hosts="qyapi.weixin.qq.com,127.0.0.1,[::1]",
        **KEY,
    )
    assert settings.log_level == "warning"


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
    return subprocess.run(
        [DUBAN, *args], env={**clean, **env}, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_cli_names_the_variable_and_exits_2(tmp_path):
    for env, named in (
        ({"DUBAN_OFFICE_HOURS": "9-5"}, "DUBAN_OFFICE_HOURS"),
        ({"DUBAN_WORKFLOW": "nosuch"}, "DUBAN_WORKFLOW"),
        ({"DUBAN_LOG_LEVEL": "loud"}, "DUBAN_LOG_LEVEL"),
    ):
        done = _run(["serve", "--port", "9"], env, tmp_path)
        assert done.returncode == 2, done.stderr
        assert named in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_background_commands_need_no_admin_key(tmp_path):
    url = f"sqlite:///{tmp_path}/prod.db"  # outside ./var: a production-like configuration
    migrations.upgrade(url)
    env = {"DUBAN_DATABASE_URL": url}
    assert _run(["audit", "verify"], env, tmp_path).returncode == 0
    assert _run(["sweep", "--once"], env, tmp_path).returncode == 0
    refused = _run(["serve", "--port", "9"], env, tmp_path)
    assert refused.returncode == 2 and "DUBAN_ADMIN_KEY" in refused.stderr


def test_a_schema_newer_than_the_release_keeps_replicas_ready(tmp_path):
    url = f"sqlite:///{tmp_path}/db.db"
    migrations.upgrade(url)
    with sqlite3.connect(tmp_path / "db.db") as conn:  # what the next release's migration does
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    with make_client(url) as client:
        ready = ok(client.get("/readyz"))
        assert (ready["revision"], ready["release"]) == ("0099", migrations.head_revision(url))
    done = _run(["db", "upgrade"], {"DUBAN_DATABASE_URL": url}, tmp_path)
    assert done.returncode == 2 and "newer" in done.stderr and "Traceback" not in done.stderr
    # A revision no release has is not a newer release: not ready, and no upgrade.
    for garbage in ("zzzz", "0000"):
        with sqlite3.connect(tmp_path / "db.db") as conn:
            conn.execute("UPDATE alembic_version SET version_num = ?", (garbage,))
        with make_client(url) as client:
            refused = client.get("/readyz")
            assert refused.status_code == 503 and "no release" in refused.json()["detail"], garbage
        done = _run(["db", "upgrade"], {"DUBAN_DATABASE_URL": url}, tmp_path)
        assert done.returncode == 2 and "no release" in done.stderr and "Traceback" not in done.stderr


def test_a_500_is_logged_once_with_the_request_id_it_answers(sqlite_url, caplog):
    with make_client(sqlite_url) as client:

        def boom() -> None:
            raise RuntimeError("a bug")

        client.app.add_api_route("/boom", boom)
        with caplog.at_level("ERROR"):
            r = client.get("/boom", headers={"X-Request-Id": "corr-500"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "corr-500" and r.json()["request_id"] == "corr-500"
    assert "a bug" not in r.text  # no stack trace to the caller
    logged = [rec for rec in caplog.records if rec.exc_info]
    assert len(logged) == 1 and "corr-500" in logged[0].getMessage()


def test_an_api_process_without_the_sweep_exports_no_sweep_counter(sqlite_url):
    for scheduler, shown in ((True, True), (False, False)):
        settings = Settings(database_url=sqlite_url, scheduler=scheduler, **KEY)
        client = TestClient(create_app(settings))  # no `with`: nothing starts in background
        assert ("duban_timers_fired_total" in client.get("/metrics").text) is shown


def test_a_database_it_cannot_use_is_one_line_and_exit_2(tmp_path):
    require_pg()
    gone = "postgresql+psycopg://postgres@127.0.0.1:5432/duban_no_such_database"
    for args, url in (
        (["db", "upgrade"], "mysql://x/y"),
        (["db", "upgrade"], gone),
        (["sweep", "--once"], gone),  # a one-off run that did nothing is not a success
        (["audit", "verify"], gone),
    ):
        done = _run(args, {"DUBAN_DATABASE_URL": url}, tmp_path)
        assert done.returncode == 2, (args, url, done.stderr)
        assert "Traceback" not in done.stderr and "DATABASE" in done.stderr.upper(), done.stderr


def test_serve_says_where_it_serves_and_warns_when_nothing_can_administer_it(tmp_path, caplog, monkeypatch):
    from service.cli import _announce

    monkeypatch.chdir(tmp_path)  # the default: SQLite under ./var, no admin key needed
    url = "sqlite:///./var/duban.db"
    with caplog.at_level("INFO", logger="duban"):
        _announce(Settings(database_url=url, admin_key=None), "127.0.0.1", 8123)
    said = caplog.text
    assert "http://127.0.0.1:8123" in said and f"SQLite {tmp_path}/var/duban.db" in said
    assert "system clock" in said and "DUBAN_ADMIN_KEY is not set" in said
    caplog.clear()
    with caplog.at_level("INFO", logger="duban"):
        _announce(Settings(database_url="postgresql+psycopg://duban:s3cret@db:5432/duban",
                           admin_key="a-long-admin-key", clock="manual"), "0.0.0.0", 8000)
    assert "duban:***@db:5432/duban" in caplog.text and "s3cret" not in caplog.text
    assert "manual clock" in caplog.text and "DUBAN_ADMIN_KEY" not in caplog.text
