"""Fake chat platforms and receivers on loopback, checking what the real ones check.

Each fake is a threaded ``http.server`` on 127.0.0.1, port 0, with an injectable clock
(seconds, like ``time.time``) for its rate limits and timestamp checks, so tests can move
time without sleeping. ``go_down("503")`` answers 503 to everything; ``go_down("refuse")``
closes the listening socket (connection refused); ``come_back()`` restores the same port.
``answer_after_s`` holds each answer back after the request was handled; ``trickle_s`` sends
the answer's body a byte at a time with that gap; ``drop_after_read`` handles the request and
closes the connection without answering. ``hold()`` keeps every answer back until
``let_go()``; ``arrived`` is set once a request has been handled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller

Response = tuple[int, dict[str, str], bytes]


def json_response(payload: dict[str, Any], status: int = 200) -> Response:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        fake = self.server.fake
        status, headers, payload = fake.dispatch(parts.path, query, self.headers, body)
        fake.arrived.set()
        fake.gate.wait(10)  # held by the test (never more than 10 s)
        if fake.drop_after_read:  # done, then the connection drops with no answer at all
            self.close_connection = True
            return
        # A slow platform (real time: the dispatcher's own timeout is real time too).
        time.sleep(fake.answer_after_s)  # done, but the answer is late
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not fake.trickle_s:
            self.wfile.write(payload)
            return
        for byte in payload:  # the answer a byte at a time, each read well within a timeout
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(fake.trickle_s)

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeServer


class FakeServer:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.mode = "up"
        self.lock = threading.Lock()
        self.port = 0
        self.hits = 0
        self.answer_after_s = 0.0
        self.trickle_s = 0.0
        self.drop_after_read = False
        self.arrived = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self._server: _Server | None = None

    # lifecycle ------------------------------------------------------------
    def start(self) -> FakeServer:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.fake = self
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def go_down(self, how: str = "503") -> None:
        if how == "refuse":
            self.stop()
        else:
            self.mode = how

    def hold(self) -> None:
        self.gate.clear()

    def let_go(self) -> None:
        self.gate.set()

    def come_back(self) -> None:
        self.mode = "up"
        if self._server is None:
            self.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # requests -------------------------------------------------------------
    def dispatch(self, path: str, query: dict[str, str], headers: Any, body: bytes) -> Response:
        with self.lock:
            self.hits += 1
            if self.mode == "503":
                return 503, {"Retry-After": "5"}, b"service unavailable"
            return self.handle(path, query, headers, body)

    def handle(self, path: str, query: dict[str, str], headers: Any, body: bytes) -> Response:
        raise NotImplementedError


class _Window:
    """Send times per robot, for "N per rolling window" checks."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)

    def count(self, robot: str, now: float, window_s: float) -> int:
        return sum(1 for t in self.times[robot] if t > now - window_s)

    def add(self, robot: str, now: float) -> None:
        self.times[robot].append(now)


@dataclass
class ChatMessage:
    robot: str
    msgtype: str
    content: str
    mentions: list[str] = field(default_factory=list)
    title: str = ""
    at: float = 0.0
    buttons: list[str] = field(default_factory=list)  # a Feishu card's button texts


class WeComRobot(FakeServer):
    """``/cgi-bin/webhook/send?key=…``: key (93000), msgtype and content, byte limits
    (text 2048, markdown 4096 → 40058), 20 messages per rolling minute per key (45009)."""

    LIMITS = {"text": 2048, "markdown": 4096}

    def __init__(self, keys: Iterable[str], clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.keys = set(keys)
        self.window = _Window()
        self.messages: list[ChatMessage] = []
        self.errors: list[int] = []

    def url(self, key: str) -> str:
        return f"{self.base_url}/cgi-bin/webhook/send?key={key}"

    def _error(self, code: int, message: str) -> Response:
        self.errors.append(code)
        return json_response({"errcode": code, "errmsg": message})

    def handle(self, path, query, headers, body) -> Response:
        if path != "/cgi-bin/webhook/send":
            return 404, {}, b"not found"
        key = query.get("key", "")
        if key not in self.keys:
            return self._error(93000, "invalid webhook url, hint: invalid key")
        try:
            payload = json.loads(body)
            msgtype = payload["msgtype"]
            part = payload[msgtype]
            content = part["content"]
        except (ValueError, KeyError, TypeError):
            return self._error(40058, "invalid request body")
        if msgtype not in self.LIMITS or not isinstance(content, str) or not content:
            return self._error(40008, "invalid message type or empty content")
        if len(content.encode("utf-8")) > self.LIMITS[msgtype]:
            return self._error(40058, f"{msgtype}.content exceed max length {self.LIMITS[msgtype]}")
        mentions = part.get("mentioned_mobile_list", [])
        if not isinstance(mentions, list) or not all(isinstance(m, str) for m in mentions):
            return self._error(40058, "mentioned_mobile_list must be a list of strings")
        now = self.clock()
        if self.window.count(key, now, 60) >= 20:
            return self._error(45009, "api freq out of limit")
        self.window.add(key, now)
        self.messages.append(ChatMessage(key, msgtype, content, mentions, at=now))
        return json_response({"errcode": 0, "errmsg": "ok"})


def dingtalk_sign(secret: str, timestamp: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class DingTalkRobot(FakeServer):
    """``/robot/send?access_token=…``: token (300001), signature and timestamp within an
    hour (310000), keywords (310000), msgtype shape, 20000 bytes (460101), 20 messages a
    rolling minute, after which the robot is blocked for 10 minutes (130101). ``@`` works
    only for atMobiles that also appear as ``@mobile`` in the text (``effective``)."""

    def __init__(
        self,
        robots: dict[str, str | None],
        clock: Callable[[], float] = time.time,
        keywords: Iterable[str] = (),
    ) -> None:
        super().__init__(clock)
        self.robots = robots
        self.keywords = tuple(keywords)
        self.window = _Window()
        self.blocked_until: dict[str, float] = {}
        self.messages: list[ChatMessage] = []
        self.effective: list[list[str]] = []
        self.errors: list[int] = []

    def url(self, token: str) -> str:
        return f"{self.base_url}/robot/send?access_token={token}"

    def _error(self, code: int, message: str) -> Response:
        self.errors.append(code)
        return json_response({"errcode": code, "errmsg": message})

    def handle(self, path, query, headers, body) -> Response:
        if path != "/robot/send":
            return 404, {}, b"not found"
        token = query.get("access_token", "")
        if token not in self.robots:
            return self._error(300001, "token is not exist")
        now = self.clock()
        if self.blocked_until.get(token, 0) > now:
            return self._error(130101, "send too fast, exceed 20 times per minute")
        secret = self.robots[token]
        if secret:
            timestamp, sign = query.get("timestamp", ""), query.get("sign", "")
            if not timestamp.isdigit() or abs(now * 1000 - int(timestamp)) > 3_600_000:
                return self._error(310000, "invalid timestamp")
            if not hmac.compare_digest(sign, dingtalk_sign(secret, timestamp)):
                return self._error(310000, "sign not match")
        try:
            payload = json.loads(body)
            msgtype = payload["msgtype"]
            if msgtype == "text":
                title, content = "", payload["text"]["content"]
            elif msgtype == "markdown":
                title, content = payload["markdown"]["title"], payload["markdown"]["text"]
            else:
                return self._error(40035, f"unsupported msgtype {msgtype}")
        except (ValueError, KeyError, TypeError):
            return self._error(40035, "missing parameter")
        if not content or (msgtype == "markdown" and not title):
            return self._error(40035, "missing parameter: title or text")
        if len(content.encode("utf-8")) > 20_000:
            return self._error(460101, "message too long")
        if self.keywords and not any(k in content for k in self.keywords):
            return self._error(310000, "keywords not in content")
        at_mobiles = payload.get("at", {}).get("atMobiles", [])
        if self.window.count(token, now, 60) >= 20:
            self.blocked_until[token] = now + 600
            return self._error(130101, "send too fast, exceed 20 times per minute")
        self.window.add(token, now)
        self.messages.append(ChatMessage(token, msgtype, content, at_mobiles, title, now))
        self.effective.append([m for m in at_mobiles if f"@{m}" in content])
        return json_response({"errcode": 0, "errmsg": "ok"})


def feishu_sign(secret: str, timestamp: str) -> str:
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class FeishuBot(FakeServer):
    """``/open-apis/bot/v2/hook/<token>``: token (19001), signature and timestamp within an
    hour (19021), msg_type shape, body ≤ 20 KB, 100 a minute and 5 a second (9499)."""

    def __init__(self, bots: dict[str, str | None], clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.bots = bots
        self.window = _Window()
        self.messages: list[ChatMessage] = []
        self.errors: list[int] = []

    def url(self, token: str) -> str:
        return f"{self.base_url}/open-apis/bot/v2/hook/{token}"

    def _error(self, code: int, message: str, status: int = 200) -> Response:
        self.errors.append(code)
        return json_response({"code": code, "msg": message, "data": {}}, status)

    def handle(self, path, query, headers, body) -> Response:
        prefix = "/open-apis/bot/v2/hook/"
        token = path[len(prefix) :] if path.startswith(prefix) else None
        if token not in self.bots:
            return self._error(19001, "param invalid: incoming webhook access token invalid", 400)
        if len(body) > 20 * 1024:
            return self._error(9499, "request body too large", 400)
        try:
            payload = json.loads(body)
        except ValueError:
            return self._error(9499, "bad request: body is not JSON", 400)
        now = self.clock()
        secret = self.bots[token]
        if secret:
            timestamp, sign = str(payload.get("timestamp", "")), str(payload.get("sign", ""))
            if not timestamp.isdigit() or abs(now - int(timestamp)) > 3600:
                return self._error(19021, "sign match fail or timestamp is not within one hour")
            if not hmac.compare_digest(sign, feishu_sign(secret, timestamp)):
                return self._error(19021, "sign match fail or timestamp is not within one hour")
        msg_type = payload.get("msg_type")
        if msg_type == "text":
            content = (payload.get("content") or {}).get("text", "")
            title, buttons = "", []
        elif msg_type == "interactive":
            card = payload.get("card") or {}
            title = card.get("header", {}).get("title", {}).get("content", "")
            content = "\n".join(e.get("content", "") for e in card.get("elements", []))
            buttons = [
                (a.get("text") or {}).get("content", "")
                for e in card.get("elements", [])
                if e.get("tag") == "action"
                for a in e.get("actions", [])
            ]
        else:
            return self._error(19001, f"param invalid: msg_type {msg_type!r}", 400)
        if not content:
            return self._error(19001, "param invalid: empty content", 400)
        if self.window.count(token, now, 60) >= 100 or self.window.count(token, now, 1) >= 5:
            return self._error(9499, "too many request")
        self.window.add(token, now)
        self.messages.append(ChatMessage(token, msg_type, content, [], title, now, buttons))
        return json_response({"code": 0, "msg": "success", "data": {}})


class WebhookReceiver(FakeServer):
    """A subscriber: verifies ``X-Duban-Signature`` over the raw body (401 when wrong),
    requires the event and delivery headers, dedupes on ``X-Duban-Delivery``.
    ``script`` holds answers to give before accepting (status or (status, Retry-After))."""

    def __init__(self, secret: str, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.secret = secret
        self.script: list[int | tuple[int, str]] = []
        self.deliveries: list[str] = []  # accepted deliveries, duplicates included
        self.bodies: dict[str, dict[str, Any]] = {}
        self.events: dict[str, str] = {}
        self.rejected = 0

    @property
    def url(self) -> str:
        return f"{self.base_url}/hooks/duban"

    def handle(self, path, query, headers, body) -> Response:
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        delivery, event = headers.get("X-Duban-Delivery"), headers.get("X-Duban-Event")
        signature = headers.get("X-Duban-Signature", "")
        content_type = headers.get("Content-Type", "")
        if not hmac.compare_digest(signature, expected) or not delivery or not event:
            self.rejected += 1
            return 401, {}, b"bad signature or missing headers"
        if not content_type.startswith("application/json"):
            return 415, {}, b"json only"
        if self.script:
            answer = self.script.pop(0)
            status, retry_after = answer if isinstance(answer, tuple) else (answer, None)
            return status, ({"Retry-After": retry_after} if retry_after else {}), b"scripted"
        self.deliveries.append(delivery)
        self.bodies[delivery] = json.loads(body)
        self.events[delivery] = event
        return 200, {}, b"ok"

    @property
    def duplicates(self) -> int:
        return len(self.deliveries) - len(set(self.deliveries))


class SmtpSink:
    """aiosmtpd handler: keeps envelopes; refuses recipients listed in ``refuse``."""

    def __init__(self, refuse: Iterable[str] = ()) -> None:
        self.refuse = set(refuse)
        self.envelopes: list[Any] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def smtp_server(sink: SmtpSink) -> Controller:
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    return controller
