"""The request's unit of work ends in the endpoint's thread, so a full thread pool cannot
deadlock with the writer that holds the lock."""

from __future__ import annotations

import threading

import anyio.to_thread
import httpx

from tests.helpers import ADMIN
from tests.live import live_server


async def _shrink_thread_pool() -> None:
    """Leave the server two worker threads, as many writers waiting for a lock would."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = 2


def test_writers_waiting_for_one_lock_with_a_full_thread_pool_all_finish(db_url):
    with live_server(db_url) as (base, app):
        app.add_api_route("/test/shrink-thread-pool", _shrink_thread_pool, methods=["POST"])
        with httpx.Client(base_url=base, headers=ADMIN, timeout=20) as c:
            assert c.post("/test/shrink-thread-pool").status_code == 200
            for path, body in (
                (
                    "/api/v1/units",
                    {"code": "wy", "name": "县", "level": "county", "kind": "government"},
                ),
                (
                    "/api/v1/projects",
                    {"code": "P", "name": "项目", "category": "省市重点", "county": "wy"},
                ),
            ):
                assert c.post(path, json=body).status_code == 201
            bid = c.post(
                "/api/v1/blockers", json={"project": "P", "title": "用地", "category": "用地"}
            ).json()["id"]
            assign = {"unit": "wy", "deadline": {"working_days": 30}}
            assert c.post(f"/api/v1/blockers/{bid}/assign", json=assign).status_code == 200
            assert c.post(f"/api/v1/blockers/{bid}/acknowledge", json={}).status_code == 200

        statuses: list[int | str] = []

        def feedback() -> None:
            with httpx.Client(base_url=base, headers=ADMIN, timeout=20) as c:
                for _ in range(5):
                    try:
                        r = c.post(f"/api/v1/blockers/{bid}/feedback", json={"note": "进展正常"})
                        statuses.append(r.status_code)
                    except httpx.TimeoutException:
                        statuses.append("timeout")

        threads = [threading.Thread(target=feedback) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [200] * 40
