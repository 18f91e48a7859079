"""Two clients × 1,000 conflicting actions on one blocker: one winner per version, the rest 412."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.helpers import ADMIN, city, create_blocker, create_project, ok
from tests.live import live_server

ROUNDS = 1000


@pytest.mark.slow
def test_conflicting_if_match_actions(db_url):
    # 2,000 requests from one key as fast as it can, under the default per-key rate limit:
    # a client's burst of conflicting actions meets 412s, not 429s (the limit's own test is
    # in test_reports_and_limits.py).
    with live_server(db_url) as (base, _app):
        with httpx.Client(base_url=base, headers=ADMIN, timeout=30) as c:
            city(c)
            create_project(c, "P1", "wy")
            bid = create_blocker(c, "P1")["id"]
            ok(c.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 20}}))
            ok(c.post(f"/api/v1/blockers/{bid}/acknowledge", json={}))
        results: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
        barrier = threading.Barrier(2)

        def client(name: str) -> None:
            with httpx.Client(base_url=base, headers=ADMIN, timeout=30) as c:
                version = int(c.get(f"/api/v1/blockers/{bid}").headers["etag"].strip('"'))
                barrier.wait()
                for i in range(ROUNDS):
                    r = c.post(f"/api/v1/blockers/{bid}/feedback", json={"note": f"{name}-{i}"},
                               headers={"If-Match": f'"{version}"'})
                    results[name].append((version, r.status_code))
                    # What a careful client does next: take the version it was told.
                    if r.status_code == 200:
                        version = int(r.headers["etag"].strip('"'))
                    else:
                        version = r.json()["current_version"]

        threads = [threading.Thread(target=client, args=(n,)) for n in results]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        everything = results["a"] + results["b"]
        assert {status for _, status in everything} <= {200, 412}
        wins = [version for version, status in everything if status == 200]
        assert len(wins) == len(set(wins)), "two actions won on the same version"
        with httpx.Client(base_url=base, headers=ADMIN) as c:
            final = ok(c.get(f"/api/v1/blockers/{bid}"))
        feedback = [e for e in final["timeline"] if e["action"] == "feedback"]
        # Nothing lost: every 200 is exactly one event, and the version counts them all.
        assert len(feedback) == len(wins)
        assert final["version"] == 3 + len(wins)
        assert sorted(e["payload"]["note"] for e in feedback) == sorted(
            f"{n}-{i}" for n in results for i, (_, s) in enumerate(results[n]) if s == 200
        )
