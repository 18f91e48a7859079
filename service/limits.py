"""Request limits: body size, and a per-key rate limit answered 429 with Retry-After."""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.problems import PROBLEM_JSON


def _problem(
    status: int, title: str, detail: str, headers: list[tuple[bytes, bytes]] | None = None
):
    body = json.dumps(
        {"type": "about:blank", "title": title, "status": status, "detail": detail}
    ).encode()
    raw = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
    return body, raw + (headers or [])


class LimitsMiddleware:
    """Refuse bodies over `max_body` bytes (413) and keys over `per_minute` requests (429)."""

    def __init__(self, app: ASGIApp, max_body: int, per_minute: int) -> None:
        self.app = app
        self.max_body = max_body
        self.rate = per_minute / 60.0
        self.burst = max(10, per_minute // 6)
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def _take(self, who: str) -> float:
        """0 when allowed, else seconds until a token is free."""
        now = time.monotonic()
        with self.lock:
            tokens, at = self.buckets.get(who, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1:
                self.buckets[who] = (tokens - 1, now)
                return 0.0
            self.buckets[who] = (tokens, now)
            if len(self.buckets) > 100_000:
                self.buckets.clear()
            return (1 - tokens) / self.rate

    async def _reply(self, send: Send, status: int, title: str, detail: str, headers=None) -> None:
        body, raw = _problem(status, title, detail, headers)
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization")
        if auth:
            wait = self._take(hashlib.sha256(auth).hexdigest())
            if wait > 0:
                retry = str(max(1, math.ceil(wait)))
                await self._reply(
                    send,
                    429,
                    "Too many requests",
                    f"This API key is over its rate limit; retry after {retry} s.",
                    [(b"retry-after", retry.encode())],
                )
                return
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await self._reply(
                send,
                413,
                "Request body too large",
                f"The request body is larger than {self.max_body} bytes.",
            )
            return
        received = 0
        limit = self.max_body

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._reply(
                send,
                413,
                "Request body too large",
                f"The request body is larger than {self.max_body} bytes.",
            )


class _TooLarge(Exception):
    pass
