"""`duban serve --workers N`: several HTTP processes over one database."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading

import httpx
import pytest
from pydantic import ValidationError

from service.settings import Settings
from tests.helpers import ADMIN, ADMIN_KEY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_several_workers_must_not_run_a_simulated_clock():
    with pytest.raises(ValidationError, match="DUBAN_WORKERS must be 1"):
        Settings(workers=2, clock="manual")
    assert Settings(workers=2).workers == 2


def test_serve_with_two_workers_answers_from_two_processes(sqlite_url):
    port = _free_port()
    env = {
        **os.environ,
        "DUBAN_DATABASE_URL": sqlite_url,
        "DUBAN_ADMIN_KEY": ADMIN_KEY,
        "DUBAN_LOG_LEVEL": "info",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    watchdog = threading.Timer(90, proc.kill)  # a server that never comes up fails, not hangs
    watchdog.start()
    try:
        started: set[str] = set()
        ready = 0
        assert proc.stderr is not None
        for line in proc.stderr:  # the workers say when they are up; no polling
            if found := re.search(r"Started server process \[(\d+)\]", line):
                started.add(found.group(1))
            if "Application startup complete" in line:
                ready += 1
                if ready == 2:
                    break
        assert len(started) == 2 and str(proc.pid) not in started
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=ADMIN, timeout=10) as c:
            assert c.get("/healthz").status_code == 200
            body = {"code": "wy", "name": "县", "level": "county", "kind": "government"}
            assert c.post("/api/v1/units", json=body).status_code == 201
            for _ in range(4):  # whichever worker answers sees the same database
                assert c.get("/api/v1/units/wy").json()["code"] == "wy"
    finally:
        watchdog.cancel()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
