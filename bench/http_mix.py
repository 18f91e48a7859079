"""REST throughput with a realistic mix, against `duban serve` with production settings.

Mix: create 10 %, assign 10 %, acknowledge 10 %, feedback 30 %, reads 40 %. First an
open-loop run finds the maximum; then a paced run at 80 % of it reports p50/p99.

The load generator shares the 2 cores with the server, so it is kept lean: one keep-alive
`http.client` connection per thread (httpx costs several times more CPU per request).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
import psycopg

from bench.common import PG_ADMIN, fresh_database, machine, percentile

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "bench-admin-key-0123456789"
H = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argv: list[str], ready_url: str, **popen) -> subprocess.Popen:
    """Start a server in its own process group; return once ``ready_url`` answers 200."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        **popen,
    )
    for _ in range(300):
        try:
            if httpx.get(ready_url, timeout=0.5).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"{argv[0]} did not start")


def stop(proc: subprocess.Popen) -> None:
    """Stop a server started by `launch`, with every process of its group."""
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def start_server(url: str, workers: int = 1) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {
        **os.environ,
        "DUBAN_DATABASE_URL": url,
        "DUBAN_ADMIN_KEY": ADMIN_KEY,
        "DUBAN_RATE_LIMIT_PER_MINUTE": "100000000",
        "DUBAN_LOG_LEVEL": "warning",
    }
    base = f"http://127.0.0.1:{port}"
    argv = [str(ROOT / ".venv/bin/duban"), "serve", "--port", str(port), "--workers", str(workers)]
    return launch(argv, f"{base}/healthz", env=env), base


def seed(base: str) -> None:
    with httpx.Client(base_url=base, headers=H) as c:
        c.post(
            "/api/v1/units",
            json={
                "code": "xx",
                "name": "市",
                "level": "city",
                "kind": "government",
                "tags": ["city_government"],
            },
        ).raise_for_status()
        c.post(
            "/api/v1/units",
            json={
                "code": "zb",
                "name": "综合专班",
                "level": "city",
                "kind": "taskforce",
                "parent": "xx",
                "tags": ["general_taskforce"],
            },
        ).raise_for_status()
        c.post(
            "/api/v1/units",
            json={
                "code": "wy",
                "name": "县",
                "level": "county",
                "kind": "government",
                "parent": "xx",
            },
        ).raise_for_status()
        c.post(
            "/api/v1/projects",
            json={"code": "P", "name": "项目", "category": "省市重点", "county": "wy"},
        ).raise_for_status()


class Reply:
    __slots__ = ("status_code", "body")

    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code, self.body = status_code, body

    def json(self):
        return json.loads(self.body)


class Client:
    """A keep-alive HTTP/1.1 connection: the cheapest client the standard library has."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname, parts.port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        self.headers = {**H, "Content-Type": "application/json"}

    def request(self, method: str, path: str, body=None) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=data, headers=self.headers)
                resp = self.conn.getresponse()
                return Reply(resp.status, resp.read())
            except (http.client.RemoteDisconnected, ConnectionError):
                self.conn.close()  # the server closed an idle keep-alive; reconnect once
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def post(self, path: str, json=None) -> Reply:
        return self.request("POST", path, json)

    def get(self, path: str, params=None) -> Reply:
        return self.request("GET", f"{path}?{urlencode(params)}" if params else path)


class Worker(threading.Thread):
    def __init__(
        self, base: str, stop: threading.Event, pace_s: float, latencies: list, errors: list
    ):
        super().__init__(daemon=True)
        self.client = Client(base)
        self.stop, self.pace_s, self.latencies, self.errors = stop, pace_s, latencies, errors
        self.collected: deque[int] = deque()
        self.assigned: deque[int] = deque()
        self.supervised: list[int] = []

    def op(self) -> Reply:
        r = random.random()
        if r < 0.1 or not self.collected:
            resp = self.client.post(
                "/api/v1/blockers", json={"project": "P", "title": "压测问题", "category": "用地"}
            )
            if resp.status_code == 201:
                self.collected.append(resp.json()["id"])
            return resp
        if r < 0.2:
            bid = self.collected.popleft()
            resp = self.client.post(
                f"/api/v1/blockers/{bid}/assign",
                json={"unit": "wy", "deadline": {"working_days": 30}},
            )
            self.assigned.append(bid)
            return resp
        if r < 0.3 and self.assigned:
            bid = self.assigned.popleft()
            self.supervised.append(bid)
            return self.client.post(f"/api/v1/blockers/{bid}/acknowledge", json={})
        if r < 0.6 and self.supervised:
            bid = random.choice(self.supervised)
            return self.client.post(f"/api/v1/blockers/{bid}/feedback", json={"note": "进展正常"})
        if self.supervised and random.random() < 0.5:
            return self.client.get("/api/v1/blockers", params={"limit": 20, "state": "supervised"})
        return self.client.get(f"/api/v1/blockers/{self.collected[-1] if self.collected else 1}")

    def run(self) -> None:
        # Paced, each worker's requests are a Poisson stream (exponential gaps, a random
        # first one): together the workers offer a Poisson stream at the target rate.
        # Equal gaps would fire all workers in step, a burst of `workers` requests at once
        # each period, and measure the burst instead of the load.
        next_at = time.perf_counter()
        if self.pace_s:
            next_at += random.expovariate(1 / self.pace_s)
            time.sleep(max(0.0, next_at - time.perf_counter()))
        while not self.stop.is_set():
            start = time.perf_counter()
            resp = self.op()
            self.latencies.append(time.perf_counter() - start)
            if resp.status_code >= 500:
                self.errors.append(resp.status_code)
            if self.pace_s:
                next_at += random.expovariate(1 / self.pace_s)
                time.sleep(max(0.0, next_at - time.perf_counter()))


def load(
    base: str, workers: int, seconds: float, rate: float | None, kind: type[Worker] | None = None
) -> tuple[float, list[float], int]:
    stop = threading.Event()
    latencies: list[float] = []
    errors: list[int] = []
    pace = (workers / rate) if rate else 0.0
    pool = [(kind or Worker)(base, stop, pace, latencies, errors) for _ in range(workers)]
    start = time.perf_counter()
    for w in pool:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in pool:
        w.join()
    return len(latencies) / (time.perf_counter() - start), latencies, len(errors)


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of one process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # gone
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_role(server_group: int, pg_database: str | None) -> dict[str, dict[int, float]]:
    """CPU seconds so far of the server's processes, its PostgreSQL backends, this client."""
    server = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == server_group:
                    server[int(entry.name)] = _cpu_of(int(entry.name))
            except OSError:
                continue
    backends = {}
    if pg_database:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (pg_database,)
            ).fetchall()
        backends = {pid: _cpu_of(pid) for (pid,) in rows}
    return {"server": server, "postgres": backends, "client": {0: time.process_time()}}


def cpu_per_request(before: dict, after: dict, requests: int) -> str:
    parts = []
    for role in ("server", "postgres", "client"):
        if not after[role]:
            continue
        used = sum(t - before[role].get(pid, 0.0) for pid, t in after[role].items())
        parts.append(f"{role} {used / max(requests, 1) * 1000:.1f}")
    return "CPU ms/request: " + ", ".join(parts)


def pct(values: list[float], q: int) -> float:
    """Percentile in milliseconds."""
    return percentile(values, q) * 1000


def measure(
    base: str,
    server_group: int,
    database: str | None,
    workers: int,
    seconds: float,
    kind: type[Worker] | None = None,
) -> str:
    """Find the maximum open-loop, then run paced at 80 % of it; the figures as one line."""
    before = cpu_by_role(server_group, database)
    peak, at_peak, errors = load(base, workers, seconds, None, kind)
    cpu = cpu_per_request(before, cpu_by_role(server_group, database), len(at_peak))
    rate, lat, errors80 = load(base, workers, seconds, peak * 0.8, kind)
    return (
        f"max {peak:.0f} req/s; at 80 % ({peak * 0.8:.0f} req/s offered) "
        f"{rate:.0f} req/s, p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, "
        f"5xx {errors + errors80}; at max, {cpu}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=16, help="client threads")
    parser.add_argument(
        "--server-workers", type=int, default=1, help="`duban serve --workers` processes"
    )
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    args = parser.parse_args()
    print(
        f"# REST mix ({machine()}; load generator on the same 2 cores; "
        f"{args.workers} client threads, {args.server_workers} server process(es))"
    )
    for kind in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        with fresh_database(kind) as url:
            proc, base = start_server(url, args.server_workers)
            try:
                seed(base)
                database = url.rsplit("/", 1)[-1] if kind == "postgres" else None
                figures = measure(base, proc.pid, database, args.workers, args.seconds)
                print(f"http_mix {kind:8s}: {figures}")
            finally:
                stop(proc)


if __name__ == "__main__":
    main()
