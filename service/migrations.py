"""Apply and inspect the Alembic migration history from code (CLI, /readyz, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from alembic import command
from service.db import Database

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.attributes["database_url"] = database_url
    return config


class SchemaNewer(RuntimeError):
    """The database was migrated by a newer release than this one."""


def upgrade(database_url: str, revision: str = "head") -> None:
    config = alembic_config(database_url)
    database = Database(database_url)
    try:
        current = current_revision(database.read_engine)
    finally:
        database.dispose()
    if is_newer(database_url, current):
        raise SchemaNewer(
            f"the database schema is at {current}, newer than this release knows "
            f"(its newest is {head_revision(database_url)}); upgrade with the newer release. "
            "This release can still serve it: start it with --no-migrate."
        )
    command.upgrade(config, revision)


def is_newer(database_url: str, current: str | None) -> bool:
    """Whether `current` is a revision this release does not have (a newer release's)."""
    if current is None:
        return False
    try:
        return (
            ScriptDirectory.from_config(alembic_config(database_url)).get_revision(current) is None
        )
    except Exception:  # alembic raises when it does not know the revision at all
        return True


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revision(database_url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
