"""A robot's rate budget after a year of messages: the claim's per-channel read, with and
without the outbox history indexes of migration 0002.

Every claim reads, for each rate-limited robot, its messages of the last minute and its
last "too fast" answer (`notifiers.ratelimit`). The outbox keeps every notification ever
sent, so that read must not grow with the history. The bench fills the outbox with ``--n``
sent notifications (one attempt each, spread over 50 robots and over the past) and times
the read at schema 0001 (no index on either) and at head.

    python -m bench.outbox_history [--n 1000000] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from bench.common import fresh_database, machine
from notifiers import claims, ratelimit
from service import migrations
from service.db import Database

ROBOTS = 50
CALLS = 20


def _fill(db: Database, n: int) -> None:
    ago = (
        "now() - (g || ' seconds')::interval"
        if db.is_postgres
        else "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || g || ' seconds')"
    )
    series = (
        f"generate_series(1, {n}) g"
        if db.is_postgres
        else f"(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) "
        "SELECT g FROM s)"
    )
    now = "now()" if db.is_postgres else "CURRENT_TIMESTAMP"
    yes, no = ("true", "false") if db.is_postgres else ("1", "0")
    with db.unit_of_work() as s:
        s.execute(
            text(
                "INSERT INTO units (code, name, level, kind, path, tags, created_at) "
                f"VALUES ('u', 'u', 'city', 'government', '/1/', '[]', {now})"
            )
        )
        for _ in range(ROBOTS):
            s.execute(
                text(
                    "INSERT INTO channels (unit_id, kind, url, secret, enabled, created_at) "
                    f"VALUES (1, 'wecom', 'https://qyapi.weixin.qq.com/x', '', {yes}, "
                    f"{now})"
                )
            )
        s.execute(
            text(
                "INSERT INTO notifications (channel_id, kind, event_type, delivery_id, status, "
                "urgent, mentions, context, attempts, not_before, created_at, sent_at) "
                f"SELECT 1 + g % {ROBOTS}, 'reminder', '', 'd' || g, 'sent', {no}, "
                f"'[]', '{{}}', 1, {ago}, {ago}, {ago} FROM {series}"
            )
        )
        s.execute(
            text(
                "INSERT INTO notification_attempts (notification_id, at, ok) "
                f"SELECT id, not_before, {yes} FROM notifications"
            )
        )
        s.execute(text("ANALYZE"))


def _read_ms(db: Database) -> float:
    now = datetime.now(UTC)
    with db.unit_of_work() as s:
        claims.plan_for_the_values(s)  # as in the dispatcher's claim
        start = time.perf_counter()
        for n in range(CALLS):
            channel = 1 + n % ROBOTS
            ratelimit.messages_since(s, channel, now - timedelta(seconds=60))
            ratelimit.throttled_since(s, channel, now - timedelta(seconds=600))
        return (time.perf_counter() - start) / CALLS * 1000


def run(kind: str, n: int) -> str:
    with fresh_database(kind) as url:
        migrations.downgrade(url, "0001")
        db = Database(url)
        try:
            _fill(db, n)
            before = _read_ms(db)
            migrations.upgrade(url)
            with db.unit_of_work() as s:
                s.execute(text("ANALYZE"))
            after = _read_ms(db)
        finally:
            db.dispose()
    line = (
        f"outbox history {kind:8s}: {n:,} sent notifications, one robot's budget read "
        f"{before:.2f} ms at schema 0001, {after:.2f} ms at head"
    )
    print(line, flush=True)
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    print(f"# outbox history ({machine()})")
    for kind in args.backends.split(","):
        run(kind, args.n)


if __name__ == "__main__":
    main()
