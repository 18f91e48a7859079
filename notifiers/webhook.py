"""Generic signed webhook to another government system (spec: "Outbound webhooks").

``POST`` the notification's context as compact UTF-8 JSON with ``X-Duban-Event``,
``X-Duban-Delivery`` (the outbox row's delivery id: the same on every retry, receivers
dedupe on it) and ``X-Duban-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>``.
2xx is delivered; 408, 429 and 5xx are retried (Retry-After honoured); any other status
is permanent. Redirects are not followed: a 3xx is permanent, so a receiver cannot bounce
the request to a host outside the allow-list.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

import httpx

from notifiers.base import (
    ChannelPolicy,
    Message,
    OutboundRequest,
    Outcome,
    http_status_outcome,
    json_bytes,
)
from service.models import Channel


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class WebhookNotifier:
    kind: str = "webhook"
    policy: ChannelPolicy = field(default_factory=ChannelPolicy)

    def fits(self, message: Message) -> bool:
        return True

    def build(self, channel: Channel, message: Message) -> OutboundRequest:
        if not channel.secret:
            raise ValueError("webhook channel has no secret to sign with")
        if not message.delivery_id:
            raise ValueError("webhook message has no delivery id")
        # A subscription's body carries its `type`; a unit's own webhook channel gets the
        # message's data, and the same `type` (the event name of X-Duban-Event).
        body = json_bytes({"type": message.event_type, **dict(message.payload or {})})
        headers = {
            "Content-Type": "application/json",
            "X-Duban-Event": message.event_type,
            "X-Duban-Delivery": message.delivery_id,
            "X-Duban-Signature": signature(channel.secret, body),
        }
        return OutboundRequest("POST", channel.url, headers, body)

    def interpret(self, response: httpx.Response) -> Outcome:
        return http_status_outcome(response, "webhook receiver")
