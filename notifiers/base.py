"""The channel plugin interface: what a notifier builds, and how it reads the answer.

A notifier is a pure translator. It never opens a connection or touches the database: the
dispatcher claims rows, asks the notifier for an :class:`OutboundRequest`, sends it with
httpx outside any transaction, and asks the notifier to :meth:`Notifier.interpret` the
response. E-mail is the one channel that does not speak HTTP; it implements
:class:`DirectNotifier` instead and delivers itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import httpx

from service.models import Channel

# Why a chat message that may have gone out is not sent again (``at_most_once`` channels).
UNCONFIRMED = (
    "the platform did not confirm the message, which may still have reached the group; "
    "it is not sent again by itself (a group would see it twice): check the group, and "
    "retry this notification if it is missing"
)


@dataclass(frozen=True)
class Message:
    """A rendered notification, ready for any channel.

    ``markdown`` and ``text`` carry the same facts; chat robots pick whichever their message
    type needs. ``mentions`` are officers' mobiles to @. Machine receivers (the generic
    webhook) ignore the rendering and post ``payload`` — the notification's own context.
    """

    title: str
    markdown: str
    text: str
    mentions: tuple[str, ...] = ()
    link: str = ""
    link_label: str = ""  # what a button to `link` says (查看详情)
    items: int = 0  # a list message's items (a digest)
    # The same list with its first n items only, and the rest counted: how a list is fitted
    # to a platform's limit without cutting an item (render.fit).
    shorter: Callable[[int], Message] | None = field(default=None, compare=False, repr=False)
    event_type: str = ""
    delivery_id: str = ""
    payload: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class OutboundRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Outcome:
    """What one delivery came to.

    ``retry``: try again later, not before ``retry_after_s`` seconds (real time) when given.
    ``throttled`` marks a platform rate-limit answer: the dispatcher then pauses the whole
    channel, not just this row. ``permanent``: retrying cannot help (bad key, bad signature).
    """

    status: Literal["ok", "retry", "permanent"]
    reason: str = ""
    retry_after_s: float | None = None
    throttled: bool = False
    excerpt: str = ""

    @classmethod
    def success(cls, excerpt: str = "") -> Outcome:
        return cls("ok", excerpt=excerpt)

    @classmethod
    def retry(
        cls, reason: str, retry_after_s: float | None = None, *, throttled: bool = False
    ) -> Outcome:
        return cls("retry", reason, retry_after_s, throttled)

    @classmethod
    def permanent(cls, reason: str) -> Outcome:
        return cls("permanent", reason)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class RateLimit:
    """At most ``max_messages`` per rolling ``window_s`` seconds of real time, per channel."""

    max_messages: int
    window_s: float


@dataclass(frozen=True)
class ChannelPolicy:
    """How the dispatcher must pace one channel kind.

    ``limits`` empty: no pacing and never digested. ``pause_after_throttle_s``: after the
    platform answered "too fast", send nothing to that channel for this long (DingTalk
    blocks a robot for ten minutes).
    """

    limits: tuple[RateLimit, ...] = ()
    pause_after_throttle_s: float = 60.0
    digest: bool = False
    # A chat group cannot drop a repeat: a message that may have arrived but was never
    # confirmed (no answer in time) is not sent again by itself.
    at_most_once: bool = False


class Notifier(Protocol):
    kind: str
    policy: ChannelPolicy

    def fits(self, message: Message) -> bool:
        """Whether the message goes out without truncation (used to size digests)."""
        ...

    def build(self, channel: Channel, message: Message) -> OutboundRequest: ...

    def interpret(self, response: httpx.Response) -> Outcome: ...


@runtime_checkable
class DirectNotifier(Protocol):
    """A channel that is not plain HTTP (SMTP): it sends by itself and says how it went."""

    kind: str
    policy: ChannelPolicy

    def fits(self, message: Message) -> bool: ...

    def deliver(self, channel: Channel, message: Message) -> Outcome: ...


def json_bytes(payload: Any) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are sent (and signed)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_request(
    url: str, payload: Any, headers: Mapping[str, str] | None = None
) -> OutboundRequest:
    return OutboundRequest(
        method="POST",
        url=url,
        headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
        body=json_bytes(payload),
    )


def response_json(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (delta form only; HTTP dates are ignored)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds)


def http_status_outcome(response: httpx.Response, what: str) -> Outcome:
    """Fallback when a platform answered without its own error code."""
    code = response.status_code
    if 200 <= code < 300:
        return Outcome.success()
    reason = f"{what} answered HTTP {code}"
    if code == 429:
        return Outcome.retry(reason, retry_after_seconds(response), throttled=True)
    if code >= 500 or code == 408:
        return Outcome.retry(reason, retry_after_seconds(response))
    return Outcome.permanent(reason)


@dataclass
class PlatformCodes:
    """A platform's error codes, sorted by what the dispatcher should do about them."""

    throttled: dict[int, float] = field(default_factory=dict)  # code -> retry after (s)
    retryable: frozenset[int] = frozenset()

    def outcome(self, code: int, message: str, what: str) -> Outcome:
        reason = f"{what} error {code}: {message}".strip()
        if code in self.throttled:
            return Outcome.retry(reason, self.throttled[code], throttled=True)
        if code in self.retryable:
            return Outcome.retry(reason)
        # Unknown codes are configuration or payload errors far more often than outages;
        # retrying them for hours only hides the problem from the operator.
        return Outcome.permanent(reason)


def errcode_outcome(response: httpx.Response, codes: PlatformCodes, platform: str) -> Outcome:
    """WeCom and DingTalk robots: HTTP 200 with `errcode` 0 is success, anything else is not."""
    data = response_json(response)
    if data is None or "errcode" not in data:
        outcome = http_status_outcome(response, f"{platform} robot")
        if outcome.ok:  # a 2xx without errcode is not the platform's answer
            return Outcome.retry(f"{platform} robot answered without errcode")
        return outcome
    code = int(data.get("errcode") or 0)
    if code == 0:
        return Outcome.success()
    return codes.outcome(code, str(data.get("errmsg", "")), platform)
