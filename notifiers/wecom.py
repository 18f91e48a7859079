"""WeCom (企业微信) group robot: ``POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…``.

Message type, by design:

* no one to @ → ``markdown`` (content at most 4096 bytes of UTF-8);
* officers to @ → ``text`` with ``mentioned_mobile_list`` (content at most 2048 bytes).

WeCom markdown can only @ by userid (``<@userid>``), and officers are known by mobile, so a
message that must reach people is sent as text. Sending markdown *plus* a second text
just for the @ would double the use of the robot's 20 messages a minute and split one
notification into two deliveries that can half-fail, so we do not.

The robot answers HTTP 200 even on failure; ``errcode`` decides: 0 ok, 45009 too fast
(retry next minute), -1 busy (retry), 93000 invalid key (permanent), anything else
(e.g. 40058 content too long) permanent.
"""

from __future__ import annotations

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

MARKDOWN_MAX_BYTES = 4096
TEXT_MAX_BYTES = 2048

CODES = PlatformCodes(throttled={45009: 60.0}, retryable=frozenset({-1, 45033}))


@dataclass(frozen=True)
class WeComNotifier:
    kind: str = "wecom"
    policy: ChannelPolicy = field(
        default_factory=lambda: ChannelPolicy(
            limits=(RateLimit(20, 60.0),),
            pause_after_throttle_s=60.0,
            digest=True,
            at_most_once=True,
        )
    )

    def _content(self, message: Message) -> tuple[str, str, int]:
        if message.mentions:
            return "text", message.text, TEXT_MAX_BYTES
        return "markdown", message.markdown, MARKDOWN_MAX_BYTES

    def fits(self, message: Message) -> bool:
        _, content, limit = self._content(message)
        return utf8_len(content) <= limit

    def build(self, channel: Channel, message: Message) -> OutboundRequest:
        msgtype, content, limit = self._content(message)
        content = fit(message, limit, lambda m: m.text if msgtype == "text" else m.markdown)
        if msgtype == "text":
            payload = {
                "msgtype": "text",
                "text": {"content": content, "mentioned_mobile_list": list(message.mentions)},
            }
        else:
            payload = {"msgtype": "markdown", "markdown": {"content": content}}
        return json_request(channel.url, payload)

    def interpret(self, response: httpx.Response) -> Outcome:
        return errcode_outcome(response, CODES, "WeCom")
