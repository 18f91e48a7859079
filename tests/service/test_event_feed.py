"""GET /api/v1/events never lets a cursor pass an event that commits later (PostgreSQL hands
out ids as rows are inserted, not as transactions commit)."""

from __future__ import annotations

import psycopg

from tests.helpers import ADMIN, city, create_blocker, create_project, make_client, ok


def _feed(client, after: int) -> tuple[list[int], int]:
    page = ok(client.get("/api/v1/events", params={"after": after, "limit": 500}, headers=ADMIN))
    ids = [e["id"] for e in page["items"]]
    return ids, int(page["next_cursor"]) if page["next_cursor"] else after


def test_an_event_committed_late_is_not_skipped(pg_url):
    with make_client(pg_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        held_on, moved = (create_blocker(client, "P1")["id"] for _ in range(2))
        seen, cursor = _feed(client, 0)
        with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as held:
            # A transaction that has written an event (its id taken) and not committed yet …
            late = held.execute(
                "INSERT INTO events (blocker_id, seq, at, actor, action, state_before, state_after,"
                " payload, prev_hash, hash) VALUES (%s, 99, now(), 'system:test', 'feedback',"
                " 'collected', 'collected', '{}', %s, %s) RETURNING id",
                (held_on, "0" * 64, "1" * 64),
            ).fetchone()[0]
            # … while another commits an event with a higher id.
            ok(client.post(f"/api/v1/blockers/{moved}/withdraw", json={"reason": "重复"}, headers=ADMIN))
            after_commit = ok(client.get(f"/api/v1/blockers/{moved}", headers=ADMIN))["timeline"][-1]["id"]
            assert after_commit > late
            page, cursor = _feed(client, cursor)
            # The feed waits for the older transaction rather than hand out the newer event.
            assert after_commit not in page and late not in page
            seen += page
            held.commit()
        page, cursor = _feed(client, cursor)
        assert page == [late, after_commit]
        seen += page
        every = list(range(1, after_commit + 1))
        assert sorted(seen) == every and len(seen) == len(every)  # each once, none skipped


def test_the_feed_pages_in_order_with_its_cursor(db_url):
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        for _ in range(3):
            create_blocker(client, "P1")
        everything, _ = _feed(client, 0)
        walked, cursor = [], 0
        while True:
            page = ok(client.get("/api/v1/events", params={"after": cursor, "limit": 2}, headers=ADMIN))
            walked += [e["id"] for e in page["items"]]
            if not page["next_cursor"] or not page["items"]:
                break
            cursor = int(page["next_cursor"])
        assert walked == everything and len(everything) == 3
        # Any event's id as the cursor continues after that event.
        assert _feed(client, everything[0])[0] == everything[1:]
