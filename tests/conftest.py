"""Test databases: a real SQLite file and a real PostgreSQL database per test.

Each backend is migrated once per run with `alembic upgrade head` into a template;
every test gets a fresh copy (a copied file, or CREATE DATABASE … TEMPLATE). When
PostgreSQL cannot be reached its tests are skipped with the reason, except under
CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings as hypothesis_settings

from service import migrations

PG_ADMIN_DSN = os.environ.get(
    "DUBAN_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
PG_URL_BASE = os.environ.get("DUBAN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
RUN_ID = uuid.uuid4().hex[:8]
BACKENDS = ["sqlite", "postgres"]

# CI replays the same examples every run (a fixed seed): a red CI is a real, reproducible
# failure, never a lucky draw. Developers get fresh random examples locally.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    hypothesis_settings.load_profile("ci")


def _pg_admin():
    conn = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3)
    return conn


def pg_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        with _pg_admin() as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}"
    return None


class PgFactory:
    def __init__(self) -> None:
        self.template = f"duban_t_{RUN_ID}_tpl"
        self.created: list[str] = []
        self.ready = False

    def _prepare(self) -> None:
        if self.ready:
            return
        with _pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{self.template}"')
        self.created.append(self.template)
        migrations.upgrade(f"{PG_URL_BASE}/{self.template}")
        self.ready = True

    def new(self) -> str:
        self._prepare()
        name = f"duban_t_{RUN_ID}_{uuid.uuid4().hex[:8]}"
        with _pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.created.append(name)
        return f"{PG_URL_BASE}/{name}"

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[-1]
        with _pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        if not self.created:
            return
        with _pg_admin() as conn:
            for name in reversed(self.created):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


@pytest.fixture(scope="session")
def pg_factory() -> Iterator[PgFactory]:
    factory = PgFactory()
    yield factory
    factory.drop_all()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tpl") / "template.db"
    migrations.upgrade(f"sqlite:///{path}")
    return path


def require_pg() -> None:
    reason = pg_available()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
    pytest.skip(reason)


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path, sqlite_template) -> Iterator[str]:
    """A freshly migrated database of each backend."""
    if request.param == "sqlite":
        path = tmp_path / "duban.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    require_pg()
    factory: PgFactory = request.getfixturevalue("pg_factory")
    url = factory.new()
    yield url
    factory.drop(url)


@pytest.fixture
def sqlite_url(tmp_path, sqlite_template) -> str:
    path = tmp_path / "duban.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def pg_url(pg_factory) -> Iterator[str]:
    require_pg()
    url = pg_factory.new()
    yield url
    pg_factory.drop(url)
