"""Shared bench helpers: fresh databases on SQLite and the local PostgreSQL."""

from __future__ import annotations

import platform
import statistics
import tempfile
import uuid
from contextlib import contextmanager

import psycopg

from service import migrations

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432"


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1..99), or NaN when there are too few samples to say."""
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 10 else float("nan")


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


@contextmanager
def fresh_database(kind: str):
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            migrations.upgrade(url)
            yield url
        return
    name = f"duban_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"{PG_BASE}/{name}"
        migrations.upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
