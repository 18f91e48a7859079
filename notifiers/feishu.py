"""Feishu / Lark (飞书) custom bot: ``POST https://open.feishu.cn/open-apis/bot/v2/hook/<token>``.

With a signing secret the JSON body carries ``timestamp`` (seconds, as a string, real time)
and ``sign = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b""))`` — note the key
is the string to sign and the message is empty, unlike DingTalk.

We send an ``interactive`` card (header + markdown + a button to the blocker, labelled
查看详情 or the like). A custom bot can only @ by open_id/user_id, which we do not hold for
officers, so a Feishu group gets no @s: printing "@<mobile>" would notify nobody and show
officials' mobile numbers to the whole group. The request body must stay under 20 KB.

Answers: ``{"code": 0}`` ok (older hooks: ``{"StatusCode": 0}``); 9499 / 11232 too many
requests (retry, pause the channel); 19021 signature or timestamp rejected, 19024 keyword
missing, 19022 IP not allowed, 19001 bad token: permanent. The platform allows 100
messages a minute and 5 a second per bot; we keep to 20 a minute and 5 a second.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from notifiers.base import (
    ChannelPolicy,
    Message,
    OutboundRequest,
    Outcome,
    PlatformCodes,
    RateLimit,
    http_status_outcome,
    json_request,
    response_json,
)
from notifiers.render import fit, utf8_len
from service.models import Channel

BODY_MAX_BYTES = 20 * 1024
CONTENT_MAX_BYTES = 16_000  # leaves room for the card scaffolding and JSON escaping

CODES = PlatformCodes(throttled={9499: 60.0, 11232: 60.0}, retryable=frozenset({-1}))


def sign(secret: str, timestamp_s: int) -> str:
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def _card(message: Message, content: str) -> dict[str, Any]:
    elements: list[dict[str, Any]] = [{"tag": "markdown", "content": content}]
    if message.link:
        elements.append(
            {
                "tag": "action",
                "actions": [
                    {
                        "tag": "button",
                        "text": {
                            "tag": "plain_text",
                            "content": message.link_label or message.link,
                        },
                        "url": message.link,
                        "type": "primary",
                    }
                ],
            }
        )
    return {
        "config": {"wide_screen_mode": True},
        "header": {
            "title": {"tag": "plain_text", "content": message.title[:100]},
            "template": "red" if "escalat" in message.event_type else "blue",
        },
        "elements": elements,
    }


@dataclass(frozen=True)
class FeishuNotifier:
    kind: str = "feishu"
    policy: ChannelPolicy = field(
        default_factory=lambda: ChannelPolicy(
            limits=(RateLimit(20, 60.0), RateLimit(5, 1.0)),
            pause_after_throttle_s=60.0,
            digest=True,
            at_most_once=True,
        )
    )
    clock: Callable[[], float] = time.time

    def fits(self, message: Message) -> bool:
        return utf8_len(message.markdown) <= CONTENT_MAX_BYTES

    def build(self, channel: Channel, message: Message) -> OutboundRequest:
        content = fit(message, CONTENT_MAX_BYTES, lambda m: m.markdown)
        payload: dict[str, Any] = {"msg_type": "interactive", "card": _card(message, content)}
        if channel.secret:
            timestamp = int(self.clock())
            payload = {
                "timestamp": str(timestamp),
                "sign": sign(channel.secret, timestamp),
                **payload,
            }
        return json_request(channel.url, payload)

    def interpret(self, response: httpx.Response) -> Outcome:
        data = response_json(response)
        code: Any = None
        if data is not None:
            code = data.get("code", data.get("StatusCode"))
        if code is None:
            outcome = http_status_outcome(response, "Feishu bot")
            if outcome.ok:
                return Outcome.retry("Feishu bot answered without a code")
            return outcome
        if int(code) == 0:
            return Outcome.success()
        message = str(data.get("msg", data.get("StatusMessage", ""))) if data else ""
        return CODES.outcome(int(code), message, "Feishu")
