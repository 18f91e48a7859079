"""`duban demo`: the seeded city moves on the simulation clock and its messages reach the inbox
through the real dispatcher and real HTTP."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import httpx
import uvicorn

from service.demo.run import DEMO_KEY, START, build
from service.jobs import make_dispatcher
from tests.live import free_port


def test_demo_city_escalates_and_chat_messages_arrive(tmp_path):
    port = free_port()
    app, sim, inbox, base = build("127.0.0.1", port, tmp_path / "demo.db", 1.0, 8, 7)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        sim.next_day()
        # A visitor's API call follows the stored simulated time: the day just simulated,
        # not the demo's start (which would take the city's clock back).
        moved_to = app.state.ctx.clock.now()
        assert moved_to > datetime.fromisoformat(START)
        clock = httpx.get(f"{base}/api/v1/admin/clock", headers={"Authorization": f"Bearer {DEMO_KEY}"}).json()
        assert datetime.fromisoformat(clock["now"]) == moved_to == app.state.ctx.clock.now()
        dispatcher = make_dispatcher(app)
        try:
            for _ in range(10):
                dispatcher.dispatch_once(batch=500)
        finally:
            dispatcher.close()
        state = httpx.get(f"{base}/demo/state").json()
        assert state["escalations"] > 0
        assert {"assigned", "supervised", "closed"} <= set(state["states"])
        assert sum(state["states"].values()) >= 70
        messages = httpx.get(f"{base}/demo/messages").json()
        platforms = {m["platform"] for m in messages}
        assert platforms == {"企业微信", "钉钉"}
        assert any(m["mentions"] for m in messages)
        assert any("逾期" in m["content"] or "升级" in m["content"] for m in messages)
        assert httpx.get(f"{base}/demo/").status_code == 200
        link = httpx.get(f"{base}/demo/blockers/1")
        assert link.status_code == 200 and "create" in link.text
        # The other links in messages: the platform (a digest's) and the ranking (a briefing's).
        listed = httpx.get(f"{base}/demo/blockers")
        assert listed.status_code == 200 and "href='blockers/" in listed.text
        ranking = httpx.get(f"{base}/demo/reports/units")
        assert ranking.status_code == 200 and "按期办结率" in ranking.text
        # Never more than 20 messages a minute to one robot: the rest were merged into digests.
        per_group: dict[str, int] = {}
        for m in messages:
            per_group[m["group"]] = per_group.get(m["group"], 0) + 1
        assert max(per_group.values()) <= 20
    finally:
        sim.stop.set()
        server.should_exit = True
        thread.join(timeout=10)
