"""Run the demo: a fresh SQLite city, the real service, the simulation, the inbox page."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from service import migrations
from service.app import create_app
from service.demo.inbox import Inbox, router
from service.demo.seed import seed
from service.demo.simulate import Simulation
from service.settings import Settings

DEMO_KEY = "demo-admin-key"
# Monday after National Day 2026; Saturday 10-10 was a make-up working day (调休).
START = "2026-10-12T08:00:00+08:00"


def build(
    host: str, port: int, database: Path, day_seconds: float, prefill_days: int, rng_seed: int
):
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{database}"
    migrations.upgrade(url)
    base = f"http://{host}:{port}"
    settings = Settings(
        database_url=url,
        admin_key=DEMO_KEY,
        clock="manual",
        clock_start=START,
        channel_allowed_hosts=f"{host},127.0.0.1,localhost",
        public_url=f"{base}/demo",
        rate_limit_per_minute=1_000_000,
    )
    app = create_app(settings)
    inbox, ref = Inbox(), {}
    app.include_router(router(inbox, ref))
    rng = random.Random(rng_seed)
    with app.state.db.unit_of_work() as session:
        world = seed(session, base, rng)
        sim = Simulation(app.state.db, app.state.ctx, world, rng)
        sim.new_blockers(session, 20)
    ref["sim"] = sim
    sim.prefill(prefill_days)
    return app, sim, inbox, base


def run_demo(
    host: str, port: int, database: Path, day_seconds: float, prefill_days: int, rng_seed: int
) -> None:
    print("duban demo: building the city and its backlog …", flush=True)
    app, sim, _inbox, base = build(host, port, database, day_seconds, prefill_days, rng_seed)

    def start_when_up() -> None:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        sim.run(day_seconds)

    threading.Thread(target=start_when_up, name="duban-demo-days", daemon=True).start()
    print(
        f"\n  督办演示已启动 / the demo is running\n"
        f"  chat inbox:  {base}/demo/   (messages as the WeCom / DingTalk groups see them)\n"
        f"  API docs:    {base}/docs     admin key: {DEMO_KEY}\n"
        f"  one working day every {day_seconds:g} s; pause and resume on the inbox page\n",
        flush=True,
    )
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        sim.stop.set()
