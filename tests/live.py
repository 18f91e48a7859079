"""A real uvicorn server on a loopback port, in a thread, for tests that need real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import httpx
import uvicorn

from service.app import create_app
from service.settings import Settings
from tests.helpers import ADMIN_KEY, START


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(db_url: str, *, background: bool = False, **overrides):
    settings = Settings(
        database_url=db_url,
        admin_key=ADMIN_KEY,
        clock=overrides.pop("clock", "manual"),
        clock_start=overrides.pop("clock_start", START),
        channel_allowed_hosts="127.0.0.1,localhost",
        **overrides,
    )
    app = create_app(settings, background=background)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            limit_concurrency=1000,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    try:
        yield base, app
    finally:
        server.should_exit = True
        thread.join(timeout=10)
