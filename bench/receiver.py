"""The benches' webhook receiver: answers every signed POST after 20 ms, in its own process.

It stands for another government system on another machine, so it should cost this
machine as little as possible: one asyncio loop, HTTP/1.1 keep-alive parsed by hand, the
20 ms served by the loop's timer rather than by a sleeping thread per connection (the
``ThreadingHTTPServer`` it replaces spent ~0.35 ms of CPU per request, on the same 2 cores
as the dispatcher it measures). It still checks every signature, and records each
delivery id once with the time it answered.

GET ``/count`` (distinct deliveries accepted), ``/lags`` (accepted minus the ``committed``
stamp in the body, for rows that carry one), ``/cpu`` (CPU seconds this process used),
anything else: delivery id -> [accepted at, blocker id].
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time

SECRET = "bench-secret"
ANSWER_AFTER_S = 0.02


class State:
    def __init__(self) -> None:
        self.accepted: dict[str, tuple[float, int | None]] = {}
        self.lags: list[float] = []

    def get(self, path: str) -> bytes:
        if path == "/count":
            return str(len(self.accepted)).encode()
        if path == "/lags":
            return json.dumps(self.lags).encode()
        if path == "/cpu":
            return str(time.process_time()).encode()
        return json.dumps(self.accepted).encode()


class Connection(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # answer in one segment, never held back by Nagle
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + length:
                return  # the rest of the body is still on its way
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            if method == "POST":
                self.post(headers, body)
            else:
                self.answer(200, self.state.get(path))

    def post(self, headers: dict[str, str], body: bytes) -> None:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(expected, headers.get("x-duban-signature", ""))
        loop = asyncio.get_running_loop()
        loop.call_later(ANSWER_AFTER_S, self.accept, ok, headers.get("x-duban-delivery"), body)

    def accept(self, ok: bool, delivery: str | None, body: bytes) -> None:
        if ok and delivery:
            at, context = time.time(), json.loads(body)
            self.state.accepted[delivery] = (at, context.get("blocker_id"))
            if "committed" in context:
                self.state.lags.append(at - context["committed"])
        self.answer(200 if ok else 401, b"ok")

    def answer(self, status: int, body: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        reason = "OK" if status == 200 else "Unauthorized"
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def serve(port_queue) -> None:
    """Run until terminated; puts the port it listens on into ``port_queue``."""

    async def main() -> None:
        state = State()
        server = await asyncio.get_running_loop().create_server(
            lambda: Connection(state), "127.0.0.1", 0, backlog=512
        )
        port_queue.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())
