"""Request limits: body size, and a per-key rate limit answered 429 with Retry-After."""

from __future__ import annotations

import hashlib
import math
import threading
import time

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.problems import problem_response


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

    async def _reply(
        self, scope: Scope, send: Send, status: int, title: str, detail: str, headers=None
    ) -> None:
        """A problem like any other (instance, request id), answered before the app runs."""
        response = problem_response(Request(scope), status, detail, title=title, headers=headers)
        await response(scope, _no_body, send)

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
                    scope,
                    send,
                    429,
                    "Too many requests",
                    f"This API key is over its rate limit; retry after {retry} s.",
                    {"Retry-After": retry},
                )
                return
        length = headers.get(b"content-length")
        too_large = length is not None and length.isdigit() and int(length) > self.max_body
        if length is None and scope["method"] in ("POST", "PUT", "PATCH"):
            # A chunked body: read it here, up to the limit, so that an oversized one is a
            # 413 rather than whatever the framework makes of a body cut short.
            buffered = await self._buffered(receive)
            too_large, receive = buffered is None, buffered or receive
        if too_large:
            await self._reply(
                scope,
                send,
                413,
                "Request body too large",
                f"The request body is larger than {self.max_body} bytes.",
            )
            return
        await self.app(scope, receive, send)

    async def _buffered(self, receive: Receive) -> Receive | None:
        """The whole body read ahead, replayed to the app; None when it is over the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away: let the app see the disconnect
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                return None
            if not message.get("more_body"):
                message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        replay = [message]

        async def replayed() -> Message:
            return replay.pop() if replay else await receive()

        return replayed


async def _no_body() -> Message:  # a refused request's body is never read
    return {"type": "http.request", "body": b"", "more_body": False}
