"""The database's own share of a burst: the burst's SQL replayed with no Python work.

Seeds the same burst as `bench.timers_scale` (M deadlines due at once), fires it with
`sweep_once` while recording every statement the sweep sends, with its parameters, and
every COPY's rows; then replays that record, in order, with the bare driver on a copy of
the seeded database taken before the sweep. The replay writes the same rows (state, event,
escalation entry, outbox row, the fired, cancelled and new timers) and commits the same
transactions; what it does not do is decide them. Its time is a floor under any sweep that
writes these rows through this driver on this machine, however lean its Python. (The
sweep's time printed beside it includes the cost of recording; `bench.timers_scale` gives
the sweep's own.)

    python -m bench.burst_floor [--burst 20000] [--batch 1000] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from contextlib import contextmanager
from datetime import UTC

import psycopg
from sqlalchemy import event

from bench.common import PG_ADMIN, fresh_database, machine
from bench.timers_scale import NOW, make_context, seed_burst


@contextmanager
def copies(kind: str, url: str):
    """Yield a function that takes a copy of the database as it is now (for the replay)."""
    taken: list[str] = []

    def take() -> str:
        if kind == "sqlite":
            path = url.split(":///", 1)[1]
            shutil.copy(path, path + ".replay")
            taken.append(path + ".replay")
            return path + ".replay"
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}_replay" TEMPLATE "{name}"')
        taken.append(f"{name}_replay")
        return url.rsplit("/", 1)[0].replace("postgresql+psycopg", "postgresql") + f"/{taken[-1]}"

    try:
        yield take
    finally:
        if kind == "postgres":
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                for name in taken:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def record_sweep(db, ctx, batch: int) -> tuple[float, list[tuple], int]:
    """Run the sweep; return its time, what it sent, and how many timers it fired."""
    from workflows import batch as batch_module
    from workflows import bulk, world
    from workflows.sweep import sweep_once

    log: list[tuple] = []

    @event.listens_for(db.write_engine, "before_cursor_execute")
    def _statement(_conn, _cursor, statement, parameters, _context, many) -> None:
        log.append(("many" if many else "one", statement, parameters))

    @event.listens_for(db.write_engine, "commit")
    def _commit(_conn) -> None:
        log.append(("commit", None, None))

    original = bulk.insert_rows

    def insert_rows(session, table, rows) -> None:
        if rows and db.is_postgres:  # a COPY does not pass through SQLAlchemy's events
            columns = list(rows[0])
            sqlite = False
            params = bulk._params(rows, columns, bulk._converters(table, columns, sqlite))
            log.append(("copy", f"COPY {table.name} ({', '.join(columns)}) FROM STDIN", params))
        original(session, table, rows)

    saved = (batch_module.insert_rows, world.insert_rows)
    batch_module.insert_rows = world.insert_rows = insert_rows
    try:
        start = time.perf_counter()
        fired, _ = sweep_once(db, ctx, now=NOW.astimezone(UTC), batch=batch)
        seconds = time.perf_counter() - start
    finally:
        batch_module.insert_rows, world.insert_rows = saved
    return seconds, log, fired


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process on this machine (the PostgreSQL backend)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def replay(kind: str, target: str, log: list[tuple]) -> tuple[float, float, float]:
    """Replay the record; returns (seconds, this process's CPU seconds, the server's)."""
    backend = None
    if kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(target, isolation_level=None)
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL"):
            conn.execute(f"PRAGMA {pragma}")
    else:
        conn = psycopg.connect(target)
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.commit()
    server = cpu_seconds(backend) if backend else 0.0
    own = time.process_time()
    start = time.perf_counter()
    cursor = conn.cursor()
    for what, statement, params in log:
        if what == "commit":
            conn.commit() if kind == "postgres" else conn.execute("COMMIT")
        elif what == "copy":
            with cursor.copy(statement) as copy:
                for row in params:
                    copy.write_row(row)
        elif what == "many":
            cursor.executemany(statement, params)
        else:
            cursor.execute(statement, params or ())
            if cursor.description is not None:
                cursor.fetchall()
    seconds = time.perf_counter() - start
    own = time.process_time() - own
    server = cpu_seconds(backend) - server if backend else 0.0
    conn.close()
    return seconds, own, server


COUNTS = {
    "blockers": "SELECT state, count(*) FROM blockers GROUP BY state",
    "timers": "SELECT kind, status, count(*) FROM timers GROUP BY kind, status",
    "events": "SELECT count(*) FROM events WHERE action = 'deadline_passed'",
    "escalations": "SELECT level, target_unit_id, count(*) FROM escalations GROUP BY 1, 2",
    "notifications": "SELECT channel_id, kind, count(*) FROM notifications GROUP BY 1, 2",
}


def written(kind: str, url: str) -> dict:
    """What the burst left in each table, counted."""
    if kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(url.split(":///", 1)[1] if "://" in url else url)
    else:
        conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
    out = {}
    for table, sql in COUNTS.items():
        rows = sorted(tuple(r) for r in conn.execute(sql).fetchall())
        out[table] = rows[0][0] if table == "events" else rows
    conn.close()
    return out


def floor(kind: str, m: int, batch: int) -> dict:
    from service.db import Database

    with fresh_database(kind) as url:
        db = Database(url)
        ctx = make_context(db, NOW)
        seed_burst(db, ctx, url, m)
        db.dispose()
        with copies(kind, url) as take:
            target = take()
            db = Database(url)
            sweep_s, log, fired = record_sweep(db, ctx, batch)
            db.dispose()
            assert fired == m, (fired, m)
            replay_s, client_cpu, server_cpu = replay(kind, target, log)
            # The replay wrote what the sweep wrote, or its time would mean nothing.
            swept, replayed = written(kind, url), written(kind, target)
            assert swept == replayed and swept["events"] == m, (swept, replayed)
    return {"m": m, "sweep_s": sweep_s, "replay_s": replay_s, "statements": len(log),
            "client_cpu": client_cpu, "server_cpu": server_cpu}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=20_000, help="deadlines due at once")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    print(f"# the database's share of a burst ({machine()})")
    for kind in args.backends.split(","):
        r = floor(kind, args.burst, args.batch)
        m = r["m"]
        print(
            f"burst_floor {kind}: {m:,} deadlines: sweep_once {r['sweep_s']:.2f} s "
            f"({r['sweep_s'] / m * 1e6:.0f} µs each); the same SQL replayed by the bare driver "
            f"{r['replay_s']:.2f} s ({r['replay_s'] / m * 1e6:.0f} µs each, "
            f"{r['replay_s'] / r['sweep_s']:.0%} of the sweep; {r['statements']:,} statements "
            f"and commits); 100,000 at that rate: {r['replay_s'] / m * 100_000:.1f} s of database "
            "alone"
            + (
                f"; CPU in the replay: server {r['server_cpu'] / m * 1e6:.0f} µs, driver "
                f"{r['client_cpu'] / m * 1e6:.0f} µs each"
                if kind == "postgres"
                else ""
            )
        )


if __name__ == "__main__":
    main()
