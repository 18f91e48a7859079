"""DingTalk (钉钉) custom robot: ``POST https://oapi.dingtalk.com/robot/send?access_token=…``.

With a signing secret ("加签") the URL also carries ``timestamp`` (milliseconds, real time,
fresh for every request — DingTalk refuses one more than an hour off) and
``sign = urlencode(base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")))``.

We always send ``markdown`` ({title, text}); an @ only works when ``at.atMobiles`` lists the
mobile *and* the text contains ``@<mobile>``, so the mentions are appended as a last line.
errcode 130101 (more than 20 messages a minute) means the robot is blocked for about ten
minutes: retry after 600 s and pause the channel. 310000 (signature, timestamp, keyword or
IP rejected) and 300001 (bad token) are permanent; -1 (busy) is retried.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from notifiers.base import (
    ChannelPolicy,
    Message,
    OutboundRequest,
    Outcome,
    PlatformCodes,
    RateLimit,
    errcode_outcome,
    json_request,
)
from notifiers.render import fit, utf8_len
from service.models import Channel

CONTENT_MAX_BYTES = 20_000
BLOCKED_FOR_S = 600.0

CODES = PlatformCodes(throttled={130101: BLOCKED_FOR_S}, retryable=frozenset({-1}))


def sign(secret: str, timestamp_ms: int) -> str:
    """The base64 signature (before URL encoding; httpx encodes query values)."""
    string_to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode("utf-8"), string_to_sign, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _mention_line(message: Message) -> str:
    return " ".join(f"@{mobile}" for mobile in message.mentions)


@dataclass(frozen=True)
class DingTalkNotifier:
    kind: str = "dingtalk"
    policy: ChannelPolicy = field(
        default_factory=lambda: ChannelPolicy(
            limits=(RateLimit(20, 60.0),),
            pause_after_throttle_s=BLOCKED_FOR_S,
            digest=True,
            at_most_once=True,
        )
    )
    # Real time for the signature, whatever clock the business logic runs on.
    clock: Callable[[], float] = time.time

    def _budget(self, message: Message) -> int:
        mentions = _mention_line(message)
        return CONTENT_MAX_BYTES - (utf8_len(mentions) + 2 if mentions else 0)

    def fits(self, message: Message) -> bool:
        return utf8_len(message.markdown) <= self._budget(message)

    def build(self, channel: Channel, message: Message) -> OutboundRequest:
        text = fit(message, self._budget(message), lambda m: m.markdown)
        mentions = _mention_line(message)
        if mentions:
            text = f"{text}\n\n{mentions}"
        payload = {
            "msgtype": "markdown",
            "markdown": {"title": message.title[:64], "text": text},
            "at": {"atMobiles": list(message.mentions), "isAtAll": False},
        }
        url = httpx.URL(channel.url)
        if channel.secret:
            timestamp = int(self.clock() * 1000)
            url = url.copy_merge_params(
                {"timestamp": str(timestamp), "sign": sign(channel.secret, timestamp)}
            )
        return json_request(str(url), payload)

    def interpret(self, response: httpx.Response) -> Outcome:
        return errcode_outcome(response, CODES, "DingTalk")
