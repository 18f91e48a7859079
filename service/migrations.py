"""Apply and inspect the Alembic migration history from code (CLI, /readyz, tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from alembic import command
from service.db import Database

ROOT = Path(__file__).resolve().parent.parent


def script_location() -> str:
    """The migration scripts: alembic/ of a source checkout (an editable install), else
    the copy a wheel installs as the package duban_alembic (pyproject.toml)."""
    source = ROOT / "alembic"
    if (ROOT / "pyproject.toml").is_file() and (source / "env.py").is_file():
        return str(source)
    spec = importlib.util.find_spec("duban_alembic")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise RuntimeError("the migration scripts (package duban_alembic) are not installed")
    return str(locations[0])


def alembic_config(database_url: str) -> Config:
    # No alembic.ini needed: an installed wheel has none (alembic.ini at the root is for
    # developers running `alembic revision`).
    config = Config()
    config.set_main_option("script_location", script_location())
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = database_url
    return config


class SchemaNewer(RuntimeError):
    """The database was migrated by a newer release than this one."""


class SchemaUnknown(RuntimeError):
    """The database records a schema revision that no release of duban has."""


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
    if is_unknown(database_url, current):
        raise SchemaUnknown(
            f"the database records schema revision {current!r}, which no release of duban "
            "has (revisions are numbered 0001, 0002, …); this is not a duban database, or its "
            "alembic_version table was changed by hand. Restore it from a backup."
        )
    command.upgrade(config, revision)


def _known(database_url: str, revision: str) -> bool:
    try:
        script = ScriptDirectory.from_config(alembic_config(database_url))
        return script.get_revision(revision) is not None
    except Exception:  # alembic raises when it does not know the revision at all
        return False


def is_newer(database_url: str, current: str | None) -> bool:
    """Whether `current` is a newer release's revision: one this release does not have,
    numbered after its newest (revisions are numbered 0001, 0002, …)."""
    head = head_revision(database_url) or ""
    if current is None or not (current.isdigit() and head.isdigit()):
        return False
    return int(current) > int(head) and not _known(database_url, current)


def is_unknown(database_url: str, current: str | None) -> bool:
    """Whether `current` is neither this release's revision nor a newer release's."""
    if current is None:
        return False
    return not _known(database_url, current) and not is_newer(database_url, current)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revision(database_url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
