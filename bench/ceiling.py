"""What this machine serves at all: the REST mix's load generator against a FastAPI app
that does nothing, on the same server stack as `duban serve` (uvicorn, uvloop, httptools,
no access log), one process.

The app has no database, no authentication and no middleware: a POST validates a small
JSON body with pydantic and answers 201 with it, a GET answers a small JSON object. Same
16 client threads, same keep-alive `http.client` connections, same 60 % POST / 40 % GET
split as `bench.http_mix`. Whatever this reaches is an upper bound for any endpoint of
duban on this box: the figure to hold the 1,000 actions/s target of issue 6 against.

    python -m bench.ceiling [--seconds 15] [--workers 16]
"""

from __future__ import annotations

import argparse
import random
import subprocess

from fastapi import FastAPI
from pydantic import BaseModel, Field

from bench.common import machine
from bench.http_mix import ROOT, Reply, Worker, _free_port, launch, measure, stop


class Body(BaseModel):
    project: str = Field(max_length=64)
    title: str = Field(max_length=200)
    category: str = Field(max_length=32)


app = FastAPI()


@app.post("/echo", status_code=201)
def echo(body: Body) -> Body:
    return body


@app.get("/ping")
def ping() -> dict[str, object]:
    return {"id": 1, "state": "supervised", "title": "压测问题"}


class BareWorker(Worker):
    def op(self) -> Reply:
        if random.random() < 0.6:
            body = {"project": "P", "title": "压测问题", "category": "用地"}
            return self.client.post("/echo", json=body)
        return self.client.get("/ping")


def start(port: int) -> subprocess.Popen:
    argv = [
        str(ROOT / ".venv/bin/python"), "-m", "uvicorn", "bench.ceiling:app",
        "--port", str(port), "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    return launch(argv, f"http://127.0.0.1:{port}/ping", cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=16, help="client threads")
    args = parser.parse_args()
    print(f"# ceiling: a FastAPI app that does nothing ({machine()}; {args.workers} clients)")
    port = _free_port()
    proc = start(port)
    base = f"http://127.0.0.1:{port}"
    try:
        print(f"ceiling: {measure(base, proc.pid, None, args.workers, args.seconds, BareWorker)}")
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
