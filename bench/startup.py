"""Start-up time: a fresh clone's `make run` until the first 200 from /healthz.

Measured twice: without a .venv (creates it and installs the project), and again with
the .venv that the first run left.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import machine

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_make_run(checkout: Path) -> float:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DUBAN_", "VIRTUAL_ENV"))}
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["make", "run", f"PORT={port}"],
        cwd=checkout,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while time.perf_counter() - start < 600:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"make run exited with {proc.returncode}")
            time.sleep(0.1)
        raise TimeoutError("no /healthz after 600 s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        checkout = Path(tmp) / "duban"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(checkout)], check=True)
        cold = time_make_run(checkout)
        shutil.rmtree(checkout / "var", ignore_errors=True)
        warm = time_make_run(checkout)
    print(f"# start-up ({machine()})")
    print(f"startup: fresh clone, no .venv: make run -> first /healthz 200 in {cold:.1f} s")
    print(f"startup: existing .venv:        make run -> first /healthz 200 in {warm:.1f} s")


if __name__ == "__main__":
    main()
