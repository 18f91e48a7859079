"""Dispatcher throughput: deliveries/s to a local webhook receiver that answers in 20 ms,
across 50 channels, and the outbox lag (row committed → receiver accepted) p99.

Two runs per database, both with the production loop (``Dispatcher.run_forever``):

* **backlog**: 5,000 rows already due at the start; how fast the outbox drains.
* **steady**: a producer process writes rows at 500/s (25 every 50 ms, like the engine
  committing changes) for 20 s while the dispatcher runs (started a second before, as in a
  running service); the lag of each row is the time from its commit to the receiver
  accepting it, so it measures the dispatcher, not a queue built up on purpose.

The receiver (:mod:`bench.receiver`) runs in its own process, as a real one would, and
checks every signature.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy import insert, text

from bench import receiver
from bench.common import fresh_database, machine, percentile
from notifiers.dispatcher import Dispatcher
from service.db import Database
from service.models import Channel, Notification, Unit

SECRET = receiver.SECRET
CHANNELS = 50
SENDERS = 24  # sending threads of the dispatcher
RATE = 500  # rows/s written by the steady producer
STEADY_S = 20.0
TICK_S = 0.05


def _serve(port_queue) -> None:
    receiver.serve(port_queue)


def _write(db: Database, channel_ids: list[int], first: int, count: int) -> None:
    """Insert ``count`` due webhook rows in one transaction, stamped with their commit time
    (taken just before the commit: the lag measured includes the commit itself)."""
    now = datetime.now(UTC)
    with db.unit_of_work() as session:
        stamp = time.time()
        session.execute(
            insert(Notification.__table__),  # Core: the producer's CPU is not what is measured
            [
                {
                    "channel_id": channel_ids[(first + n) % len(channel_ids)],
                    "kind": "webhook",
                    "event_type": "blocker.escalated",
                    "delivery_id": uuid.uuid4().hex,
                    "urgent": True,
                    "status": "pending",
                    "attempts": 0,
                    "context": {"blocker_id": first + n, "committed": stamp},
                    "mentions": [],
                    "not_before": now,
                    "created_at": now,
                }
                for n in range(count)
            ],
        )


def _produce(db_url: str, channel_ids: list[int], total: int) -> None:
    """Write ``total`` rows at RATE rows/s, on a fixed schedule (catching up if late)."""
    db = Database(db_url)
    start = time.monotonic()
    written = 0
    while written < total:
        due = min(total, int((time.monotonic() - start) * RATE) + 1)
        if due > written:
            _write(db, channel_ids, written, due - written)
            written = due
        time.sleep(TICK_S)
    db.dispose()


def _accepted(base: str) -> dict[str, list]:
    """Delivery id -> [accepted at, blocker id] (also read by ``bench.latency``)."""
    return httpx.get(f"{base}/stats", timeout=30).json()


def _count(base: str, client: httpx.Client | None = None) -> int:
    return int((client or httpx).get(f"{base}/count", timeout=30).text)


def _setup(db: Database, url: str) -> list[int]:
    with db.unit_of_work() as s:
        unit = Unit(code="u", name="u", level="city", kind="government", path="/1/")
        s.add(unit)
        s.flush()
        chans = [
            Channel(unit_id=unit.id, kind="webhook", url=url, secret=SECRET)
            for _ in range(CHANNELS)
        ]
        s.add_all(chans)
        s.flush()
        return [c.id for c in chans]


def _dispatch(db: Database, base: str, expect: int, producer=None) -> tuple[float, float, float]:
    """Run the dispatcher loop until the receiver has ``expect`` deliveries; the seconds
    taken and the CPU seconds this process (the dispatcher's) and the receiver used
    meanwhile."""
    dispatcher = Dispatcher(
        db,
        allowed_hosts=frozenset({"127.0.0.1"}),
        business_now=lambda: datetime.now(UTC),
        workers=SENDERS,
    )
    stop = threading.Event()
    loop = threading.Thread(target=dispatcher.run_forever, args=(stop,), kwargs={"batch": 500})
    loop.start()
    if producer is not None:
        time.sleep(1.0)  # a running service: the dispatcher is already polling when rows come
    poll = httpx.Client()  # one client: a new one per poll costs an SSL context
    receiver_cpu = float(poll.get(f"{base}/cpu").text)
    start, cpu = time.perf_counter(), time.process_time()
    try:
        if producer is not None:
            producer.start()
        while _count(base, poll) < expect and time.perf_counter() - start < 300:
            time.sleep(0.1)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        receiver_cpu = float(poll.get(f"{base}/cpu").text) - receiver_cpu
    finally:
        stop.set()
        loop.join()
        dispatcher.close()
        poll.close()
        if producer is not None:
            producer.join()
    return elapsed, cpu, receiver_cpu


def run(kind: str, total: int = 5000) -> list[str]:
    lines = []
    for mode in ("backlog", "steady"):
        ports: multiprocessing.Queue = multiprocessing.Queue()
        receiver = multiprocessing.Process(target=_serve, args=(ports,), daemon=True)
        receiver.start()
        base = f"http://127.0.0.1:{ports.get(timeout=30)}"
        with fresh_database(kind) as db_url:
            db = Database(db_url)
            ids = _setup(db, f"{base}/hook")
            if mode == "backlog":
                for first in range(0, total, 1000):
                    _write(db, ids, first, min(1000, total - first))
                if db.is_postgres:  # statistics as autovacuum keeps them on a live outbox
                    with db.unit_of_work() as session:
                        session.execute(text("ANALYZE"))
                expect, producer = total, None
            else:
                expect = int(RATE * STEADY_S)
                producer = multiprocessing.Process(target=_produce, args=(db_url, ids, expect))
            elapsed, cpu, receiver_cpu = _dispatch(db, base, expect, producer)
            db.dispose()
        accepted = _count(base)
        lags = sorted(httpx.get(f"{base}/lags", timeout=30).json())
        receiver.terminate()
        line = (
            f"deliveries {kind:8s} {mode:7s}: {accepted}/{expect} in {elapsed:.1f} s = "
            f"{accepted / elapsed:.0f}/s across {CHANNELS} channels (receiver 20 ms), "
            f"CPU per delivery: dispatcher {cpu / max(1, accepted) * 1000:.2f} ms, "
            f"receiver {receiver_cpu / max(1, accepted) * 1000:.2f} ms"
        )
        if mode == "steady":
            line += (
                f", written at {RATE}/s; lag commit→accepted p50 {percentile(lags, 50):.2f} s "
                f"p99 {percentile(lags, 99):.2f} s max {lags[-1]:.2f} s"
            )
        lines.append(line)
        print(line, flush=True)
    return lines


def main() -> None:
    print(f"# dispatcher deliveries ({machine()})")
    for kind in ("sqlite", "postgres"):
        run(kind)


if __name__ == "__main__":
    main()
