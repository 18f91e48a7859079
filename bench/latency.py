"""Deadline passing → escalation committed, and → chat message accepted by the receiver.

`duban serve` with the system clock and the default 1 s sweep interval; 200 blockers whose
deadline timers are set to fall due over the next 30 s; a receiver process answers every
delivery (a generic signed webhook channel on the general taskforce's unit, which receives
level 1). Latencies are wall-clock: first sight of the escalation row (polled every 20 ms)
and the receiver's accept time, each minus the timer's due time.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import time
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text

from bench.common import fresh_database, machine, percentile
from bench.deliveries import SECRET, _accepted, _serve
from bench.http_mix import H, seed, start_server, stop
from service.db import Database

N = 200


def _setup(base: str, hook_url: str) -> list[int]:
    seed(base)  # the city, its general taskforce, a county and project P, as http_mix has them
    with httpx.Client(base_url=base, headers=H, timeout=30) as c:
        c.post(
            "/api/v1/channels",
            json={"unit": "zb", "kind": "webhook", "url": hook_url, "secret": SECRET},
        ).raise_for_status()
        ids = []
        for _ in range(N):
            bid = c.post(
                "/api/v1/blockers", json={"project": "P", "title": "t", "category": "用地"}
            ).json()["id"]
            c.post(
                f"/api/v1/blockers/{bid}/assign",
                json={"unit": "wy", "deadline": {"working_days": 20}},
            )
            c.post(f"/api/v1/blockers/{bid}/acknowledge", json={})
            ids.append(bid)
    return ids


def run(kind: str) -> str:
    ports: multiprocessing.Queue = multiprocessing.Queue()
    receiver = multiprocessing.Process(target=_serve, args=(ports,), daemon=True)
    receiver.start()
    hook_base = f"http://127.0.0.1:{ports.get(timeout=30)}"
    with fresh_database(kind) as url:
        os.environ["DUBAN_CHANNEL_ALLOWED_HOSTS"] = "127.0.0.1"
        proc, base = start_server(url)
        try:
            ids = _setup(base, f"{hook_base}/hook")
            db = Database(url)
            start = datetime.now(UTC) + timedelta(seconds=3)
            due = {bid: start + timedelta(seconds=random.uniform(0, 30)) for bid in ids}
            with db.unit_of_work() as s:
                for bid, at in due.items():
                    s.execute(
                        text(
                            "UPDATE timers SET due_at = :at WHERE blocker_id = :b AND kind = 'deadline' "
                            "AND status = 'pending'"
                        ),
                        {
                            "at": at if db.is_postgres else at.strftime("%Y-%m-%d %H:%M:%S.%f"),
                            "b": bid,
                        },
                    )
            seen: dict[int, float] = {}
            deadline = time.time() + 90
            while len(seen) < N and time.time() < deadline:
                with db.unit_of_work(readonly=True) as s:
                    for (bid,) in s.execute(text("SELECT blocker_id FROM escalations")):
                        seen.setdefault(bid, time.time())
                time.sleep(0.02)
            time.sleep(5)
            accepted = _accepted(hook_base)
            db.dispose()
        finally:
            stop(proc)
            receiver.terminate()
    escalation_lat = sorted(seen[b] - due[b].timestamp() for b in seen)
    first_message: dict[int, float] = {}
    for at, bid in accepted.values():
        if bid in due and at >= due[bid].timestamp():
            first_message[bid] = min(at, first_message.get(bid, at))
    chat_lat = sorted(first_message[b] - due[b].timestamp() for b in first_message)
    q = percentile
    return (
        f"latency {kind:8s}: deadline → escalation committed p50 {q(escalation_lat, 50):.2f} s, "
        f"p99 {q(escalation_lat, 99):.2f} s ({len(seen)}/{N}); → escalation message accepted by the "
        f"receiver p50 {q(chat_lat, 50):.2f} s, p99 {q(chat_lat, 99):.2f} s ({len(first_message)}/{N})"
    )


def main() -> None:
    print(f"# deadline latency ({machine()}; sweep interval 1 s)")
    for kind in ("sqlite", "postgres"):
        print(run(kind))


if __name__ == "__main__":
    main()
